"""Shards: registering them, placing new repositories by weight, draining, and the routes."""

from __future__ import annotations

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store import schema
from hostd.store.accounts import AccountError, Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards
from tests import pg


@pytest.fixture
def accounts(database: Database) -> Accounts:
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    return accounts


def _create(accounts: Accounts, count: int, prefix: str = "r") -> list[str]:
    """Place ``count`` new repositories; the shard each went to."""
    return [accounts.add_repo(RepoName("alice", f"{prefix}{i}"), "git", False).shard for i in range(count)]


def test_a_new_database_has_the_default_shard_only(database: Database) -> None:
    [shard] = Shards(database).all()
    assert (shard.name, shard.weight, shard.state, shard.repositories) == ("default", 1, "active", 0)


def test_new_repositories_are_spread_by_weight(database: Database, accounts: Accounts) -> None:
    shards = Shards(database)
    shards.add("s2", weight=2)
    placed = _create(accounts, 30)
    assert placed.count("default") == 10 and placed.count("s2") == 20
    # Deterministic: the emptiest for its weight, ties to the first name.
    assert placed[:3] == ["default", "s2", "s2"]
    assert {s.name: s.repositories for s in shards.all()} == {"default": 10, "s2": 20}


def test_a_new_shard_catches_up_before_the_others_get_more(database: Database, accounts: Accounts) -> None:
    _create(accounts, 6)
    Shards(database).add("s2")
    assert _create(accounts, 6, prefix="n") == ["s2"] * 6


def test_draining_and_weight_zero_take_no_new_repositories(database: Database, accounts: Accounts) -> None:
    shards = Shards(database)
    shards.add("s2")
    shards.add("s3", weight=0)
    shards.drain("default")
    assert shards.get("default").state == "draining" and shards.get("s3").state == "active"
    assert set(_create(accounts, 4)) == {"s2"}
    shards.drain("s2")
    with pytest.raises(AccountError, match="no shard takes new repositories"):
        accounts.add_repo(RepoName("alice", "none"), "git", False)
    # An explicit shard is the operator's choice, draining or not.
    assert accounts.add_repo(RepoName("alice", "pinned"), "hg", True, shard="s3").shard == "s3"
    shards.drain("default", draining=False)
    assert accounts.placement() == "default"


def test_placement_and_the_repository_row_agree(database: Database, accounts: Accounts) -> None:
    Shards(database).add("s2")
    accounts.add_repo(RepoName("alice", "a"), "git", True)
    expected = accounts.placement()
    repo = accounts.add_repo(RepoName("alice", "b"), "git", True)
    assert repo.shard == expected
    assert accounts.repo(RepoName("alice", "b")) == repo
    assert accounts.delete_repo(RepoName("alice", "b")) == repo


def test_routes_list_every_repository_with_its_shard(database: Database, accounts: Accounts) -> None:
    Shards(database).add("s2")
    accounts.add_repo(RepoName("alice", "b"), "git", True, shard="s2")
    accounts.add_repo(RepoName("alice", "a"), "hg", True, shard="default")
    assert Shards(database).routes() == [(RepoName("alice", "a"), "default"), (RepoName("alice", "b"), "s2")]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add("S2"), "invalid shard name: 'S2'"),
        (lambda s: s.add("default"), "shard already exists: default"),
        (lambda s: s.add("s2", weight=-1), "weight must be 0-1000"),
        (lambda s: s.set_weight("nope", 1), "no such shard: nope"),
        (lambda s: s.drain("nope"), "no such shard: nope"),
        (lambda s: s.get("nope"), "no such shard: nope"),
        (lambda s: s.add("s2", git=("10.0.0.1",)), "not host:port"),
    ],
    ids=["case", "duplicate", "weight", "weight of unknown", "drain unknown", "get unknown", "server"],
)
def test_refusals_name_the_problem(database: Database, call: object, message: str) -> None:
    with pytest.raises(AccountError, match=message):
        call(Shards(database))  # type: ignore[operator]


def test_an_unknown_shard_cannot_hold_a_repository(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="no such shard: s9"):
        accounts.add_repo(RepoName("alice", "x"), "git", False, shard="s9")


def test_ensure_registers_a_shard_once(database: Database) -> None:
    shards = Shards(database)
    assert shards.ensure("s2") is True
    assert shards.ensure("s2") is False
    assert [s.name for s in shards.all()] == ["default", "s2"]


def test_servers_are_kept_in_order(database: Database) -> None:
    shards = Shards(database)
    shards.add("s2", git=("10.0.0.2:8101", "10.0.0.3:8101"), hg=("10.0.0.2:8102",))
    assert shards.set_servers("s2", git=("10.0.0.4:8101",), hg=()).git_servers == ("10.0.0.4:8101",)
    assert shards.get("s2").hg_servers == ()


# --- Server names (migration 0005, the naming rule of hostd.store.shards) ---------


def test_servers_listed_by_address_are_named_by_position_at_first(database: Database) -> None:
    shard = Shards(database).add("s2", git=("10.0.0.2:8101", "10.0.0.3:8101"), hg=("10.0.0.2:8102",))
    assert shard.servers("git") == (("git1", "10.0.0.2:8101"), ("git2", "10.0.0.3:8101"))
    assert shard.servers("hg") == (("hg1", "10.0.0.2:8102"),)


def test_a_server_keeps_its_name_when_another_is_added_or_removed_before_it(database: Database) -> None:
    shards = Shards(database)
    shards.add("s2", git=("10.0.0.1:8101", "10.0.0.2:8101", "10.0.0.3:8101"))
    # The middle one goes, a new one comes first: the others keep their names,
    # the new one gets a number above every one in use (git2 is not handed on).
    shard = shards.set_servers("s2", git=("10.0.0.9:8101", "10.0.0.1:8101", "10.0.0.3:8101"), hg=())
    assert shard.servers("git") == (("git4", "10.0.0.9:8101"), ("git1", "10.0.0.1:8101"), ("git3", "10.0.0.3:8101"))
    shard = shards.remove_server("s2", "git", "git1")
    assert shard.servers("git") == (("git4", "10.0.0.9:8101"), ("git3", "10.0.0.3:8101"))
    shard = shards.add_server("s2", "git", "big-one", "10.0.0.5:8101")
    assert shard.git_servers == ("10.0.0.9:8101", "10.0.0.3:8101", "10.0.0.5:8101")
    assert shard.git_names == ("git4", "git3", "big-one")
    assert shards.get("s2") == shard


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add_server("s2", "git", "git1", "10.0.0.7:8101"), "has git1 at 10.0.0.2:8101 already"),
        (lambda s: s.add_server("s2", "git", "git9", "10.0.0.2:8101"), "has git1 at 10.0.0.2:8101 already"),
        (lambda s: s.add_server("s2", "web", "web2", "10.0.0.7:8101"), "'web' is not a shard pool"),
        (lambda s: s.add_server("s2", "git", "git 9", "10.0.0.7:8101"), "invalid server name 'git 9'"),
        (lambda s: s.add_server("s2", "git", "git9", "10.0.0.7"), "not host:port"),
        (lambda s: s.add_server("s9", "git", "git9", "10.0.0.7:8101"), "no such shard: s9"),
        (lambda s: s.remove_server("s2", "git", "git7"), "has no server git7"),
        (lambda s: s.remove_server("s2", "hg", "hg1"), "last server of shard s2's hg pool"),
        (lambda s: s.set_servers("s2", git=("10.0.0.7:8101", "10.0.0.7:8101"), hg=()), "listed twice"),
    ],
    ids=["name-taken", "address-taken", "not-a-pool", "bad-name", "bad-address", "unknown-shard", "unknown-server",
         "last-server", "twice"],
)
def test_server_refusals_name_the_problem(database: Database, call: object, message: str) -> None:
    shards = Shards(database)
    shards.add("s2", git=("10.0.0.2:8101", "10.0.0.3:8101"), hg=("10.0.0.2:8102",))
    before = shards.get("s2")
    with pytest.raises(AccountError, match=message):
        call(shards)  # type: ignore[operator]
    assert shards.get("s2") == before


def test_the_servers_of_an_older_database_get_the_names_they_had() -> None:
    """Before migration 0005 a server's name was its position: it keeps that name."""
    url = pg.new_database(migrated=False)
    schema.upgrade(url, "0004")
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO shards (name, git_servers, hg_servers, created)"
                     " VALUES ('s2', '{10.0.0.2:8101,10.0.0.3:8101}', '{}', 0)")
    schema.upgrade(url)
    db = Database(url)
    try:
        shard = Shards(db).get("s2")
        assert shard.servers("git") == (("git1", "10.0.0.2:8101"), ("git2", "10.0.0.3:8101"))
        assert shard.servers("hg") == () and Shards(db).get("default").servers("git") == ()
        # The names stay beside the addresses, one each.
        with pytest.raises(psycopg.errors.CheckViolation):
            with psycopg.connect(url) as conn:
                conn.execute("UPDATE shards SET git_names = '{git1}' WHERE name = 's2'")
    finally:
        db.close()
