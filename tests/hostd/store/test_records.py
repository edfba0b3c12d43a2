"""The records cache and the change feed, against a real PostgreSQL.

What they promise: a warm lookup makes no query; any change to users,
tokens, repositories or grants, committed by anyone, is forgotten at once
(through LISTEN/NOTIFY); a read racing an invalidation never keeps its stale
result; a lost feed connection means "read through", and a reconnect forgets
everything; and while the database is down, what was cached is served for
``lifetime`` seconds (stale-if-error), never longer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store.accounts import Accounts, Level, Repo
from hostd.store.changes import ChangeFeed
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.records import Records, RecordsUnavailable
from singlemalt import Scope, TokenRecord, Unavailable, UserRecord
from tests.polling import wait_until

ALICE_REPO = RepoName("alice", "code")


class Feed:
    """A stand-in feed whose connection the test switches."""

    def __init__(self, connected: bool = True) -> None:
        self.connected = connected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(Accounts):
    """Accounts that count the lookups request handling makes, and can run a hook mid-read."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.queries = 0
        self.during_read: list[Callable[[], None]] = []

    def user(self, username: str) -> UserRecord | None:
        self.queries += 1
        found = super().user(username)
        for hook in self.during_read:
            hook()
        return found

    def token(self, token_id: str) -> TokenRecord | None:
        self.queries += 1
        return super().token(token_id)

    def repo(self, ref: RepoName) -> Repo | None:
        self.queries += 1
        return super().repo(ref)

    def grant_level(self, username: str, ref: RepoName) -> Level:
        self.queries += 1
        return super().grant_level(username, ref)


@pytest.fixture
def accounts(database: Database) -> Counting:
    counting = Counting(database)
    counting.add_user("alice", "alice's password")
    counting.add_user("bob", "bob's password")
    counting.add_repo(ALICE_REPO, "git", False)
    counting.queries = 0
    return counting


@pytest.fixture
def feed(database_url: str) -> Iterator[ChangeFeed]:
    running = ChangeFeed(database_url, idle_check=0.5)
    yield running
    running.close()


@pytest.fixture
def live(accounts: Counting, feed: ChangeFeed) -> Records:
    """Records kept true by a real change feed."""
    records = Records(accounts, feed)
    feed.subscribe(records.invalidate)
    assert feed.wait_connected(10)
    return records


def test_warm_lookups_make_no_query(live: Records, accounts: Counting) -> None:
    repo = live.repo(ALICE_REPO)
    assert repo is not None
    live.user("alice"), live.user("nobody"), live.level("bob", repo)
    cold = accounts.queries
    assert cold == 4
    for _ in range(100):
        assert live.user("Alice") is not None  # the same canonical name
        assert live.user("nobody") is None  # negatives are cached too
        assert live.repo(ALICE_REPO) == repo
        assert live.level("bob", repo) is Level.NONE
        assert live.level("alice", repo) is Level.ADMIN
        assert live.level(None, repo) is Level.NONE
    assert accounts.queries == cold
    assert live.user("not a name!") is None


def test_a_password_change_is_seen_at_once(live: Records, accounts: Counting) -> None:
    old = live.user("alice")
    assert old is not None
    accounts.set_password("alice", "a new password")
    wait_until("the new password hash is served", lambda: live.user("alice") != old, timeout=5, interval=0.01)
    new = live.user("alice")
    assert new is not None and new.credential_version == old.credential_version + 1


def test_a_change_made_by_anyone_else_counts_too(live: Records, accounts: Counting, database_url: str) -> None:
    assert live.user("bob") is not None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE name = 'bob'")
    wait_until("the deleted user is gone", lambda: live.user("bob") is None, timeout=5, interval=0.01)


def test_deletion_revocation_and_grants(live: Records, accounts: Counting) -> None:
    issued = accounts.create_token("bob", Scope.WRITE, None)
    record = live.token(issued.token_id)
    assert record is not None and not record.revoked
    accounts.revoke_token(issued.token_id)
    wait_until("the revocation is seen", lambda: live.token(issued.token_id).revoked,  # type: ignore[union-attr]
               timeout=5, interval=0.01)

    repo = live.repo(ALICE_REPO)
    assert repo is not None and live.level("bob", repo) is Level.NONE
    accounts.grant("bob", ALICE_REPO, Level.WRITE)
    wait_until("the grant is seen", lambda: live.level("bob", repo) is Level.WRITE, timeout=5, interval=0.01)
    accounts.revoke("bob", ALICE_REPO)
    wait_until("the revoked grant is seen", lambda: live.level("bob", repo) is Level.NONE, timeout=5, interval=0.01)

    accounts.delete_repo(ALICE_REPO)
    wait_until("the deleted repository is gone", lambda: live.repo(ALICE_REPO) is None, timeout=5, interval=0.01)
    accounts.delete_user("alice")
    wait_until("the deleted user is gone", lambda: live.user("alice") is None, timeout=5, interval=0.01)


def test_a_read_racing_an_invalidation_is_not_kept(accounts: Counting) -> None:
    records = Records(accounts, Feed())
    # The change lands (and its notification arrives) while the read runs:
    # what the read got may predate it.
    accounts.during_read.append(lambda: records.invalidate("users"))
    assert records.user("alice") is not None
    accounts.during_read.clear()
    before = accounts.queries
    records.user("alice")
    assert accounts.queries == before + 1, "the raced result must not have been kept"
    records.user("alice")
    assert accounts.queries == before + 1, "an unraced result is kept"


def test_invalidation_forgets_only_what_depends_on_the_table(accounts: Counting) -> None:
    records = Records(accounts, Feed())
    repo = records.repo(ALICE_REPO)
    assert repo is not None
    records.user("alice"), records.level("bob", repo)
    before = accounts.queries
    records.invalidate("flags")  # a table this cache does not know: everything is forgotten
    records.user("alice"), records.repo(ALICE_REPO), records.level("bob", repo)
    assert accounts.queries == before + 3
    records.invalidate("tokens")
    records.user("alice"), records.repo(ALICE_REPO), records.level("bob", repo)
    assert accounts.queries == before + 3
    records.invalidate("grants")
    records.user("alice"), records.repo(ALICE_REPO), records.level("bob", repo)
    assert accounts.queries == before + 4


def test_without_the_feed_every_lookup_reads_through(accounts: Counting) -> None:
    feed = Feed(connected=False)
    records = Records(accounts, feed)
    for _ in range(3):
        records.user("alice")
    assert accounts.queries == 3
    feed.connected = True
    records.user("alice")
    assert accounts.queries == 3, "what was read while disconnected was fresh when read"


def test_entries_expire_after_their_lifetime(accounts: Counting) -> None:
    clock = Clock()
    records = Records(accounts, Feed(), lifetime=60, clock=clock)
    records.user("alice")
    clock.now += 59
    records.user("alice")
    assert accounts.queries == 1
    clock.now += 2
    records.user("alice")
    assert accounts.queries == 2


def test_the_cache_is_bounded(accounts: Counting) -> None:
    records = Records(accounts, Feed(), max_entries=2)
    records.user("a1"), records.user("a2"), records.user("a1"), records.user("a3")
    before = accounts.queries
    records.user("a1"), records.user("a3")
    assert accounts.queries == before, "the most recently used stay"
    records.user("a2")
    assert accounts.queries == before + 1, "the least recently used went"


def unreachable(tmp_path: Path) -> Database:
    """A database whose server is not running: its socket directory is empty."""
    return Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)


def test_stale_if_error_for_the_lifetime_then_a_clear_error(accounts: Counting, tmp_path: Path) -> None:
    clock = Clock()
    feed = Feed()
    records = Records(accounts, feed, lifetime=300, clock=clock)
    alice = records.user("alice")
    assert records.user("nobody") is None
    # PostgreSQL goes away: the feed notices, and the database cannot be read.
    feed.connected = False
    accounts.db = unreachable(tmp_path)
    clock.now += 299
    assert records.user("alice") == alice
    assert records.user("nobody") is None
    assert records.stale == 2
    with pytest.raises(RecordsUnavailable) as raised:
        records.user("carol")  # never cached
    assert isinstance(raised.value, Unavailable) and isinstance(raised.value, DatabaseUnavailable)
    assert "try again shortly" in raised.value.reason
    clock.now += 2
    with pytest.raises(RecordsUnavailable):
        records.user("alice")  # older than the lifetime: not served any more


def test_an_invalidated_entry_is_not_served_stale(accounts: Counting, tmp_path: Path) -> None:
    records = Records(accounts, Feed(connected=False))
    records.user("alice")
    records.invalidate("users")  # the password changed, then the database went down
    accounts.db = unreachable(tmp_path)
    with pytest.raises(RecordsUnavailable):
        records.user("alice")


def test_the_feed_reconnects_and_forgets_everything(live: Records, accounts: Counting, feed: ChangeFeed,
                                                    database_url: str) -> None:
    live.user("alice")
    heard: list[str | None] = []
    feed.subscribe(heard.append)
    # The server drops the feed's connection (what a restart does to it).
    with psycopg.connect(database_url, autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert dropped
    wait_until("the feed reconnected and invalidated everything", lambda: None in heard and feed.connected,
               timeout=10, interval=0.05)
    before = accounts.queries
    live.user("alice")
    assert accounts.queries == before + 1
    accounts.set_password("alice", "after the reconnect")
    wait_until("changes are heard again", lambda: "users" in heard, timeout=5, interval=0.01)


def test_a_feed_that_cannot_connect_marks_the_database_down(tmp_path: Path) -> None:
    downs = threading.Event()
    feed = ChangeFeed(f"postgresql://hostd@/hostd?host={tmp_path}", on_down=downs.set, backoff=(0.05, 0.1))
    try:
        assert not feed.connected
        assert downs.wait(10)
        assert not feed.connected
        assert "connected=False" in repr(feed)
    finally:
        feed.close()


def test_a_broken_subscriber_does_not_silence_the_others(live: Records, accounts: Counting,
                                                         feed: ChangeFeed) -> None:
    def broken(table: str | None) -> None:
        raise RuntimeError("boom")

    heard: list[str | None] = []
    feed.subscribe(broken)
    feed.subscribe(heard.append)
    accounts.set_password("bob", "bob's new password")
    wait_until("the second subscriber heard", lambda: "users" in heard, timeout=5, interval=0.01)


def test_a_forked_child_starts_its_own_feed(feed: ChangeFeed, monkeypatch: pytest.MonkeyPatch) -> None:
    assert feed.wait_connected(10)
    first = feed._thread
    monkeypatch.setattr("os.getpid", lambda: -1)  # as if in a child made by fork
    feed.start()
    assert feed._thread is not first
    assert feed.wait_connected(10)


def test_after_a_reconnect_entries_are_read_again_but_still_cover_an_outage(accounts: Counting,
                                                                           tmp_path: Path) -> None:
    clock = Clock()
    records = Records(accounts, Feed(), clock=clock)
    alice = records.user("alice")
    clock.now += 1
    records.invalidate(None)  # the feed reconnected: changes may have been missed
    before = accounts.queries
    assert records.user("alice") == alice
    assert accounts.queries == before + 1, "a suspect entry is read again before it is served"
    records.user("alice")
    assert accounts.queries == before + 1, "and then served from memory"
    clock.now += 1
    records.invalidate(None)
    # PostgreSQL is back, but the pool has no connection yet.
    accounts.db = unreachable(tmp_path)
    assert records.user("alice") == alice


def test_after_a_lost_connection_the_feed_says_the_database_is_back(database_url: str) -> None:
    ups: list[int] = []
    feed = ChangeFeed(database_url, on_up=lambda: ups.append(1), backoff=(0.05, 0.1))
    try:
        assert feed.wait_connected(10)
        assert ups == [], "the first connection is no comeback"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        wait_until("the feed reconnected and said so", lambda: ups == [1] and feed.connected, timeout=10,
                   interval=0.05)
    finally:
        feed.close()


def test_connected_for_counts_from_the_last_connect(feed: ChangeFeed, tmp_path: Path) -> None:
    assert feed.wait_connected(10)
    assert feed.connected_for(0)
    assert not feed.connected_for(3600)
    never = ChangeFeed(f"postgresql://hostd@/hostd?host={tmp_path}")
    try:
        assert not never.connected_for(0)
    finally:
        never.close()
