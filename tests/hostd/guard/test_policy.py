"""The repository policy when PostgreSQL is down: reads from the cache, pushes refused with a clear 503.

The policy reads through :class:`hostd.store.records.Records`; these tests
take the database away under it (a :class:`Database` whose socket directory
has no server) and check what each kind of request gets, in-process through
singlemalt under WebTest's lint, so the answer is the one a client sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import webtest

from hostd.guard.policy import MOVING, PUSH_UNAVAILABLE, READ_UNAVAILABLE, RepositoryPolicy
from hostd.names import RepoName
from hostd.store.accounts import Accounts, Level
from hostd.store.database import Database
from hostd.store.records import Records
from singlemalt import (
    Action,
    Allowed,
    Denied,
    Identity,
    PasswordHasher,
    Scope,
    SingleMalt,
    Target,
    Unavailable,
    Verifier,
)
from tests.singlemalt.test_middleware import DummyApp, basic

PASSWORD = "alice's password"
ALICE = Identity("alice", "password", Scope.WRITE)
BOB = Identity("bob", "password", Scope.WRITE)


class Feed:
    def __init__(self) -> None:
        self.connected = True


class World:
    """alice owns the private git repository alice/code and the public alice/open; bob may read alice/code."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        setup = Accounts(database)
        setup.add_user("alice", PASSWORD)
        setup.add_user("bob", "bob's password")
        setup.add_repo(RepoName("alice", "code"), "git", False)
        setup.add_repo(RepoName("alice", "open"), "git", True)
        setup.grant("bob", RepoName("alice", "code"), Level.READ)
        self.accounts = Accounts(database)
        self.feed = Feed()
        self.records = Records(self.accounts, self.feed)
        self.down: str | None = None
        self.policy = RepositoryPolicy(self.records, vcs="git", writable=lambda: self.down)
        self.dead = Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)

    def outage(self) -> None:
        """PostgreSQL stops: the feed hears it, every query fails, and writes are not possible."""
        self.feed.connected = False
        self.accounts.db = self.dead
        self.down = "database unreachable: no server"

    def target(self, repository: str, action: Action) -> Target:
        return Target(repository, action, "test")


@pytest.fixture
def world(database: Database, tmp_path: Path) -> World:
    return World(database, tmp_path)


def test_decisions_with_the_database_up(world: World) -> None:
    assert isinstance(world.policy(ALICE, world.target("alice/code", Action.WRITE)), Allowed)
    assert isinstance(world.policy(BOB, world.target("alice/code", Action.READ)), Allowed)
    denied = world.policy(BOB, world.target("alice/code", Action.WRITE))
    assert isinstance(denied, Denied) and denied.reveal
    assert isinstance(world.policy(None, world.target("alice/nothing", Action.READ)), Denied)


def test_cached_reads_go_on_while_the_database_is_down(world: World) -> None:
    world.policy(BOB, world.target("alice/code", Action.READ))
    world.policy(None, world.target("alice/open.git", Action.READ))
    world.outage()
    assert isinstance(world.policy(BOB, world.target("alice/code", Action.READ)), Allowed)
    assert isinstance(world.policy(None, world.target("alice/open.git", Action.READ)), Allowed)
    # What was never read cannot be decided: 503, not a guess either way.
    with pytest.raises(Unavailable) as raised:
        world.policy(BOB, world.target("alice/open", Action.READ))
    assert raised.value.reason == READ_UNAVAILABLE


def test_a_push_is_refused_while_the_database_is_down_even_when_everything_is_cached(world: World) -> None:
    push = world.target("alice/code", Action.WRITE)
    assert isinstance(world.policy(ALICE, push), Allowed)
    world.outage()
    with pytest.raises(Unavailable) as raised:
        world.policy(ALICE, push)
    assert raised.value.reason == PUSH_UNAVAILABLE
    assert raised.value.retry_after == 5


def test_a_push_to_an_uncached_repository_is_refused_with_the_push_message(world: World) -> None:
    world.outage()
    with pytest.raises(Unavailable) as raised:
        world.policy(ALICE, world.target("alice/open", Action.WRITE))
    assert raised.value.reason == PUSH_UNAVAILABLE


def test_denials_need_no_database_check(world: World) -> None:
    world.policy(BOB, world.target("alice/code", Action.WRITE))
    world.outage()
    # bob may not push anyway: he is told so, not that the database is down.
    denied = world.policy(BOB, world.target("alice/code", Action.WRITE))
    assert isinstance(denied, Denied) and denied.reveal


def test_a_repository_in_its_move_window_refuses_pushes_to_those_who_may_push(world: World) -> None:
    with world.accounts.db.transaction() as conn:
        conn.execute("INSERT INTO shards (name, created) VALUES ('s2', 0)")
        conn.execute("UPDATE repos SET moving_to = 's2' WHERE name = 'code'")
    with pytest.raises(Unavailable) as raised:
        world.policy(ALICE, world.target("alice/code", Action.WRITE))
    assert raised.value.reason == MOVING.format("alice/code") and raised.value.retry_after == 5
    # Reads go on; someone who may not push learns nothing of the move.
    assert isinstance(world.policy(BOB, world.target("alice/code", Action.READ)), Allowed)
    denied = world.policy(BOB, world.target("alice/code", Action.WRITE))
    assert isinstance(denied, Denied) and "move" not in denied.reason
    assert isinstance(world.policy(None, world.target("alice/code", Action.WRITE)), Denied)


def test_without_a_write_check_writes_are_decided_from_the_records(database: Database) -> None:
    accounts = Accounts(database)
    accounts.add_user("carol", "carol's password")
    accounts.add_repo(RepoName("carol", "x"), "git", False)
    policy = RepositoryPolicy(accounts, vcs="git")
    carol = Identity("carol", "password", Scope.WRITE)
    assert isinstance(policy(carol, Target("carol/x", Action.WRITE, "push")), Allowed)


# -- what a client sees: singlemalt in front of the policy -------------------------


@pytest.fixture
def client(world: World, hasher: PasswordHasher) -> webtest.TestApp:
    def classify(environ: dict[str, Any]) -> Target:
        action = Action.READ if environ["REQUEST_METHOD"] == "GET" else Action.WRITE
        return Target(environ["PATH_INFO"].strip("/"), action, "test")

    verifier = Verifier(world.records, hasher=hasher)
    app = SingleMalt(DummyApp(), classify=classify, verifier=verifier, authorize=world.policy, realm="hostd")
    return webtest.TestApp(app, lint=True)


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_over_http_cached_logins_clone_and_pushes_get_the_503_message(world: World, client: webtest.TestApp) -> None:
    client.get("/alice/code", headers=basic("alice", PASSWORD), status=200)
    client.get("/alice/open", status=200)
    world.outage()
    client.get("/alice/code", headers=basic("alice", PASSWORD), status=200)
    client.get("/alice/open", status=200)
    push = client.post("/alice/code", params=b"pack", headers=basic("alice", PASSWORD), status=503)
    assert push.text == PUSH_UNAVAILABLE + "\n"
    assert push.headers["Retry-After"] == "5"
    # A login never seen before cannot be checked: 503 too, and not counted as a failure.
    stranger = client.get("/alice/open", headers=basic("bob", "bob's password"), status=503)
    assert "database is unavailable" in stranger.text
