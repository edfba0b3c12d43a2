"""Web sessions in PostgreSQL: what ends one, what the table keeps, what a lookup costs."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hostd.store.accounts import AccountError, Accounts
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.sessions import IDLE, TOUCH_EVERY, Sessions, new_session_token, token_hash
from singlemalt import Scope


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def accounts(database: Database) -> Accounts:
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_user("bob", "bob's password")
    return accounts


@pytest.fixture
def sessions(database: Database, accounts: Accounts) -> Sessions:
    del accounts
    return Sessions(database)


def sql(database_url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement as someone in psql would, outside the code under test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []


def test_a_session_signs_its_user_in_and_the_table_never_holds_the_token(
        sessions: Sessions, database_url: str) -> None:
    token = sessions.create("Alice")
    assert sessions.lookup(token) == "alice"
    rows = sql(database_url, "SELECT token_hash, username, expires - created FROM web_sessions")
    assert rows == [(hashlib.sha256(token.encode()).digest(), "alice", timedelta(days=14))]
    dump = repr(sql(database_url, "SELECT * FROM web_sessions"))
    assert token not in dump and token.encode() not in dump.encode()


def test_tokens_are_256_random_bits_and_anything_else_is_no_session(sessions: Sessions) -> None:
    tokens = {new_session_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 43 for t in tokens)
    sessions.create("alice")
    for text in ["", "x" * 42, "x" * 44, "!" * 43, new_session_token(), "é" * 43]:
        assert sessions.lookup(text) is None
    assert token_hash("a" * 43) is not None and token_hash("a b" + "c" * 40) is None


def test_garbage_costs_no_query(tmp_path: Path) -> None:
    nowhere = Sessions(Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0))
    assert nowhere.lookup("not a token") is None
    nowhere.delete("not a token")


def test_signing_out_ends_that_session_only(sessions: Sessions) -> None:
    first, second, bobs = sessions.create("alice"), sessions.create("alice"), sessions.create("bob")
    sessions.delete(first)
    sessions.delete("not a token")
    assert [sessions.lookup(t) for t in (first, second, bobs)] == [None, "alice", "bob"]
    assert sessions.delete_all("ALICE") == 1
    assert [sessions.lookup(t) for t in (second, bobs)] == [None, "bob"]


@pytest.mark.parametrize("column, age", [
    ("expires", timedelta(seconds=1)),
    ("last_seen", IDLE + timedelta(minutes=1)),
], ids=["absolute", "idle"])
def test_an_expired_session_is_no_session(
        sessions: Sessions, database_url: str, column: str, age: timedelta) -> None:
    token, other = sessions.create("alice"), sessions.create("alice")
    sql(database_url, f"UPDATE web_sessions SET {column} = now() - %s WHERE token_hash = %s", age, token_hash(token))
    assert sessions.lookup(token) is None
    assert sessions.lookup(other) == "alice"
    assert sessions.purge() == 1
    assert sql(database_url, "SELECT count(*) FROM web_sessions") == [(1,)]


def test_a_session_in_use_is_touched_every_few_minutes_not_at_every_page(
        sessions: Sessions, database_url: str) -> None:
    token = sessions.create("alice")
    digest = token_hash(token)

    def seen() -> Any:
        return sql(database_url, "SELECT last_seen, xmin::text FROM web_sessions WHERE token_hash = %s", digest)[0]

    before = seen()
    assert sessions.lookup(token) == "alice"
    assert seen() == before  # a read: no new row version
    sql(database_url, "UPDATE web_sessions SET last_seen = now() - %s", TOUCH_EVERY + timedelta(seconds=5))
    stale = seen()
    assert sessions.lookup(token) == "alice"
    assert seen()[0] > stale[0]
    # Idle time counts from the last touch: nearly IDLE after the start, but used since, it lives on.
    sql(database_url, "UPDATE web_sessions SET created = now() - %s", IDLE + timedelta(hours=1))
    assert sessions.lookup(token) == "alice"


def test_a_new_password_ends_every_session_and_a_revoked_token_none(
        sessions: Sessions, accounts: Accounts) -> None:
    token = sessions.create("alice")
    issued = accounts.create_token("alice", Scope.READ, None)
    accounts.revoke_token(issued.token_id)  # bumps credential_version: not a password change
    assert sessions.lookup(token) == "alice"
    accounts.set_password("alice", "a new password")
    assert sessions.lookup(token) is None
    assert sessions.lookup(sessions.create("alice")) == "alice"


def test_a_disabled_or_deleted_user_has_no_session(
        sessions: Sessions, accounts: Accounts, database_url: str) -> None:
    alices, bobs = sessions.create("alice"), sessions.create("bob")
    sql(database_url, "UPDATE users SET password_hash = NULL WHERE name = 'bob'")
    assert sessions.lookup(bobs) is None
    with pytest.raises(AccountError, match="cannot sign in"):
        sessions.create("bob")
    accounts.delete_user("alice")
    assert sql(database_url, "SELECT count(*) FROM web_sessions WHERE username = 'alice'") == [(0,)]
    accounts.add_user("alice", "alice's password")  # the same name, the same password: another account
    assert sessions.lookup(alices) is None
    with pytest.raises(AccountError, match="no such user"):
        sessions.create("nobody")
    with pytest.raises(AccountError):
        sessions.create("not a name!")


def test_the_stamp_also_ends_a_session_a_delete_left_behind(
        sessions: Sessions, accounts: Accounts, database_url: str) -> None:
    """A row restored from an older backup, for a user since re-created: the new salt tells them apart."""
    token = sessions.create("alice")
    row = sql(database_url, "SELECT token_hash, password_stamp, expires FROM web_sessions")[0]
    accounts.delete_user("alice")
    accounts.add_user("alice", "alice's password")
    sql(database_url, "INSERT INTO web_sessions (token_hash, username, password_stamp, expires)"
        " VALUES (%s, 'alice', %s, %s)", *row)
    assert sessions.lookup(token) is None


def test_expired_rows_are_purged_when_someone_signs_in_at_most_once_an_interval(
        database: Database, accounts: Accounts, database_url: str) -> None:
    del accounts
    clock = Clock()
    sessions = Sessions(database, purge_every=60.0, clock=clock)
    sessions.create("alice")  # the process's first sign-in purges (nothing yet)
    sql(database_url, "UPDATE web_sessions SET expires = now() - interval '1 second'")
    sessions.create("alice")  # within the interval: no purge
    assert sql(database_url, "SELECT count(*) FROM web_sessions") == [(2,)]
    clock.now = 61.0
    live = sessions.create("bob")
    assert sql(database_url, "SELECT username FROM web_sessions ORDER BY username") == [("alice",), ("bob",)]
    assert sessions.lookup(live) == "bob"


def test_an_unreachable_database_raises_database_unavailable(tmp_path: Path) -> None:
    sessions = Sessions(Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0))
    for call in (lambda: sessions.lookup(new_session_token()), lambda: sessions.create("alice"),
                 lambda: sessions.delete(new_session_token()), lambda: sessions.delete_all("alice")):
        with pytest.raises(DatabaseUnavailable):
            call()


def test_the_repr_shows_lifetimes_only(sessions: Sessions) -> None:
    assert repr(sessions) == "<Sessions absolute=14 days, 0:00:00 idle=2 days, 0:00:00>"
