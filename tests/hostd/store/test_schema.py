"""Migrations: a database made at the first revision, with data, upgrades to the newest and keeps every row."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from hostd.names import RepoName
from hostd.store import schema
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.pushlog import PushLog
from tests import pg

#: Rows written with the first revision's schema, as the SQLite import and the release's CLI wrote them.
ROWS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "users": ("name, password_hash, credential_version, created", [
        ("alice", "scrypt$a", 3, 1_700_000_000.5), ("bob", None, 1, 1_700_000_001.25), ("zoë", "scrypt$z", 1, 2.0)]),
    "repos": ("owner, name, vcs, public, created", [
        ("alice", "notes", "git", True, 1_700_000_002.0), ("zoë", "café", "hg", False, 1_700_000_003.0)]),
    "tokens": ("id, username, secret_hash, scope, expires_at, revoked, created", [
        ("t1", "alice", "sha$1", "read", None, False, 1.5), ("t2", "bob", "sha$2", "write", 9e9, True, 2.5)]),
    "grants": ("username, owner, name, level", [("bob", "alice", "notes", "write"), ("alice", "zoë", "café", "admin")]),
    "flags": ("name, value", [("read_only", True)]),
    "pushlog": ("owner, name, username, at, ref, old, new", [
        ("alice", "notes", "alice", 1_700_000_010.0 + i, f"refs/heads/b{i}", "0" * 40, f"{i:040x}")
        for i in range(50)]),
}


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}").fetchall()
                for table, (columns, _) in ROWS.items()}


def structure(url: str) -> list[tuple[Any, ...]]:
    """Tables, columns, indexes, triggers and functions: what a migration changes."""
    with psycopg.connect(url) as conn:
        return conn.execute("""
            SELECT 'column', table_name, column_name || ' ' || data_type || ' ' || is_nullable
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL SELECT 'index', tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT 'trigger', tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL SELECT 'function', proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            ORDER BY 1, 2, 3
        """).fetchall()


@pytest.fixture
def first_revision() -> str:
    """A database at revision 0001 (the SQLite release's tables), holding :data:`ROWS`."""
    url = pg.new_database(migrated=False)
    assert schema.current(url) is None
    schema.upgrade(url, "0001")
    assert schema.current(url) == "0001"
    with psycopg.connect(url) as conn:
        for table, (columns, values) in ROWS.items():
            placeholders = ", ".join(["%s"] * len(values[0]))
            conn.cursor().executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)
    return url


def test_upgrading_to_the_newest_revision_keeps_every_row(first_revision: str) -> None:
    before = rows(first_revision)
    assert {table: len(found) for table, found in before.items()} == {t: len(v) for t, (_, v) in ROWS.items()}

    schema.upgrade(first_revision)

    assert schema.current(first_revision) == schema.head()
    assert rows(first_revision) == before
    # Repositories from before shards are on the shard of a single host.
    with psycopg.connect(first_revision) as conn:
        assert conn.execute("SELECT DISTINCT shard FROM repos").fetchall() == [("default",)]
        assert conn.execute("SELECT name, weight, draining FROM shards").fetchall() == [("default", 1, False)]


def test_the_upgraded_database_works_as_a_new_one(first_revision: str) -> None:
    schema.upgrade(first_revision)
    db = Database(first_revision)
    try:
        accounts = Accounts(db)
        accounts.add_user("carol", "carol's password")
        assert accounts.users() == ["alice", "bob", "carol", "zoë"]
        PushLog(db).record(RepoName("alice", "notes"), "carol", [("refs/heads/main", "0" * 40, "1" * 40)])
        assert PushLog(db).entries(RepoName("alice", "notes"), limit=1)[0].username == "carol"
    finally:
        db.close()
    # The head schema's change notifications: every table a pool caches says when it changes.
    with psycopg.connect(first_revision, autocommit=True) as listener, \
            psycopg.connect(first_revision, autocommit=True) as writer:
        listener.execute("LISTEN hostd_changes")
        writer.execute("UPDATE users SET credential_version = credential_version + 1 WHERE name = 'alice'")
        writer.execute("UPDATE tokens SET revoked = true")
        writer.execute("DELETE FROM grants WHERE username = 'bob'")
        writer.execute("UPDATE repos SET public = true")
        writer.execute("UPDATE flags SET value = false")
        writer.execute("UPDATE shards SET weight = 2")
        heard = [note.payload for note in listener.notifies(timeout=10, stop_after=6)]
    assert heard == ["users", "tokens", "grants", "repos", "flags", "shards"]


def test_upgrading_twice_changes_nothing(first_revision: str) -> None:
    schema.upgrade(first_revision)
    after_once = (schema.current(first_revision), structure(first_revision), rows(first_revision))

    schema.upgrade(first_revision)

    assert (schema.current(first_revision), structure(first_revision), rows(first_revision)) == after_once


def test_a_new_database_and_an_upgraded_one_have_the_same_schema(first_revision: str) -> None:
    schema.upgrade(first_revision)
    assert structure(first_revision) == structure(pg.new_database())


def test_the_migrations_form_one_line() -> None:
    """Two heads (two migrations written on branches, both revising the same one) would stop every upgrade."""
    scripts = ScriptDirectory(str(schema.MIGRATIONS))
    assert scripts.get_heads() == [schema.head()]
    chain = [script.revision for script in scripts.walk_revisions()]
    assert chain[-1] == "0001" and chain[0] == schema.head() and len(set(chain)) == len(chain)
