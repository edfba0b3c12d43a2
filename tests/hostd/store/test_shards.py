"""Shards: registering them, placing new repositories by weight, draining, and the routes."""

from __future__ import annotations

import pytest

from hostd.names import RepoName
from hostd.store.accounts import AccountError, Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards


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
