"""The one-time import of the SQLite release's database: every row, verified, once, and the file kept aside."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from hostd.names import RepoName
from hostd.store import legacy
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.legacy import ImportReport, LegacyImportError, import_once
from hostd.store.pushlog import PushLog
from tests import pg

#: The schema of the SQLite release, as ``git show 6c5e996:hostd/store/database.py`` has it
#: (a copy: the test must not change when that history is out of reach).
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    credential_version INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    expires_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS repos (
    owner TEXT NOT NULL REFERENCES users(name),
    name TEXT NOT NULL,
    vcs TEXT NOT NULL CHECK (vcs IN ('git', 'hg')),
    public INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS grants (
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('read', 'write', 'admin')),
    PRIMARY KEY (username, owner, name),
    FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS flags (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pushlog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    username TEXT NOT NULL,
    at REAL NOT NULL,
    ref TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL
);
"""

ZERO = "0" * 40
USERS = [
    ("alice", "scrypt$alice-hash", 3, 1_700_000_000.123456),
    ("bob", "scrypt$bob-hash", 1, 1_700_000_100.0),
    ("zoë-ünïcødé", "scrypt$ü-hash", 1, 1_700_000_200.987654321),
    ("locked", None, 2, 1_700_000_300.5),  # no password: tokens only
]
REPOS = [("alice", "notes", "git", 1, 1_700_001_000.25), ("alice", "wiki", "hg", 0, 1_700_001_001.0),
         ("zoë-ünïcødé", "café", "git", 0, 1_700_001_002.0)]
TOKENS = [
    ("t-alice-read", "alice", "sha256$a", "read", None, 0, 1_700_002_000.0),
    ("t-alice-old", "alice", "sha256$b", "write", 1_700_100_000.0, 1, 1_700_002_001.0),  # revoked
    ("t-locked", "locked", "sha256$c", "write", 1_900_000_000.5, 0, 1_700_002_002.0),
]
GRANTS = [("bob", "alice", "notes", "write"), ("bob", "alice", "wiki", "read"),
          ("alice", "zoë-ünïcødé", "café", "admin")]
FLAGS = [("read_only", 0), ("something_else", 1)]
#: Many entries, with the gaps deleted rows leave, over several repositories.
PUSHLOG = [(i, "alice", ("notes", "wiki")[i % 2], ("alice", "bob")[i % 3 == 0], 1_700_003_000.0 + i / 7,
            f"refs/heads/b{i % 5}", ZERO if i % 11 == 0 else f"{i:040x}", f"{i + 1:040x}")
           for i in range(1, 3001) if i % 97 != 0]

EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "users": USERS,
    "repos": [(o, n, v, bool(p), c) for o, n, v, p, c in REPOS],
    "tokens": [(i, u, s, sc, e, bool(r), c) for i, u, s, sc, e, r, c in TOKENS],
    "grants": GRANTS,
    "flags": [(n, bool(v)) for n, v in FLAGS],
    "pushlog": PUSHLOG,
}


def old_release_database(path: Path, *, keep_open: bool = False,
                         extra: dict[str, list[tuple[Any, ...]]] | None = None) -> sqlite3.Connection:
    """A database as the SQLite release left it: WAL mode, its schema, the rows above (and ``extra``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(OLD_SCHEMA)
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # what a killed worker leaves: rows still only in the WAL
    tables: dict[str, list[tuple[Any, ...]]] = {"users": USERS, "repos": REPOS, "tokens": TOKENS,
                                                "grants": GRANTS, "flags": FLAGS, "pushlog": PUSHLOG}
    conn.execute("BEGIN")
    for table, rows in tables.items():
        for row in rows + (extra or {}).get(table, []):
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    conn.execute("COMMIT")
    if not keep_open:
        conn.close()
    return conn


def postgres_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.connection() as conn:
        return {table: pg.rows_as_released(conn, table) for table in EXPECTED}


def expected_rows() -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(rows, key=repr) for table, rows in EXPECTED.items()}


def backups(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if ".imported-" in p.name)


def test_every_row_is_imported_verified_and_the_file_set_aside(tmp_path: Path, database: Database) -> None:
    path = tmp_path / "hostd.db"
    old_release_database(path)

    report = import_once(path, database, clock=lambda: 1_764_000_000.0)

    assert postgres_rows(database) == expected_rows()
    assert report == ImportReport((("users", 4), ("repos", 3), ("tokens", 3), ("grants", 3), ("flags", 2),
                                   ("pushlog", len(PUSHLOG))), tmp_path / "hostd.db.imported-20251124T160000Z")
    assert "imported and verified (4 users" in report.summary()
    assert not path.exists()
    assert stat.S_IMODE(report.backup.stat().st_mode) == 0o600
    # The backup is the file itself, still readable as the release left it.
    with sqlite3.connect(report.backup) as kept:
        assert kept.execute("SELECT count(*) FROM pushlog").fetchone() == (len(PUSHLOG),)
    # The accounts work as before, and the next push comes after every imported one.
    accounts = Accounts(database)
    assert accounts.repo(RepoName("zoë-ünïcødé", "café")) is not None
    PushLog(database).record(RepoName("alice", "notes"), "alice", [("refs/heads/main", ZERO, "1" * 40)])
    with database.connection() as conn:
        newest = conn.execute("SELECT max(id) AS id FROM pushlog").fetchone()
    assert newest is not None and newest["id"] > PUSHLOG[-1][0]


def test_rows_only_in_the_wal_are_imported_and_kept_with_the_backup(tmp_path: Path, database: Database) -> None:
    """The release's workers were killed, not closed: the last writes are in ``hostd.db-wal`` alone."""
    writer = old_release_database(tmp_path / "live.db", keep_open=True)
    data = tmp_path / "data"
    data.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(tmp_path / f"live.db{suffix}", data / f"hostd.db{suffix}")
    writer.close()
    assert (data / "hostd.db-wal").stat().st_size > 0

    report = import_once(data / "hostd.db", database)

    assert postgres_rows(database) == expected_rows()
    assert backups(data) == [report.backup.name + suffix for suffix in ("", "-shm", "-wal")]
    assert not list(data.glob("hostd.db-*"))
    assert all(stat.S_IMODE((data / name).stat().st_mode) == 0o600 for name in backups(data))


def test_a_row_that_does_not_read_back_the_same_rolls_everything_back(tmp_path: Path, database: Database) -> None:
    """A trigger changes bob's hash on its way in: the verification must see it and keep nothing."""
    path = tmp_path / "hostd.db"
    old_release_database(path)
    with database.connection() as conn:
        conn.execute("""
            CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.name = 'bob' THEN NEW.password_hash := 'scrypt$someone-else'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER tamper BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION tamper();
        """)

    with pytest.raises(LegacyImportError, match=r"verification failed.*users row name='bob': column password_hash"):
        import_once(path, database)

    assert all(rows == [] for rows in postgres_rows(database).values())
    assert path.exists() and backups(tmp_path) == []
    with database.connection() as conn:
        conn.execute("DROP TRIGGER tamper ON users")
    import_once(path, database)  # nothing was left half done: the import simply runs again
    assert postgres_rows(database) == expected_rows()


def test_a_start_that_stopped_after_the_commit_only_sets_the_file_aside(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hostd.db"
    old_release_database(path)

    def crash(path: Path, stamp: str) -> Path:
        raise KeyboardInterrupt  # the machine went down right after the commit

    with monkeypatch.context() as patch:
        patch.setattr(legacy, "set_aside", crash)
        with pytest.raises(KeyboardInterrupt):
            import_once(path, database)
    assert path.exists() and postgres_rows(database) == expected_rows()

    report = import_once(path, database)

    assert report.resumed and "already imported" in report.summary()
    assert postgres_rows(database) == expected_rows()  # not twice
    assert not path.exists() and report.backup.exists()


def test_a_start_that_stopped_while_setting_the_file_aside_reuses_its_backup(
    tmp_path: Path, database: Database
) -> None:
    path = tmp_path / "hostd.db"
    old_release_database(path)
    import_once(path, database)
    backup = tmp_path / backups(tmp_path)[0]
    for suffix in ("", "-wal", "-shm"):  # as if the crash came between the hard links and removing hostd.db
        if Path(f"{backup}{suffix}").exists():
            os.link(f"{backup}{suffix}", f"{path}{suffix}")

    report = import_once(path, database)

    assert report.resumed and report.backup == backup
    assert {name.split("Z")[0] for name in backups(tmp_path)} == {backup.name.split("Z")[0]}  # one backup
    assert not path.exists() and not list(tmp_path.glob("hostd.db-*"))


def test_a_database_with_other_accounts_is_left_alone(tmp_path: Path, database: Database) -> None:
    path = tmp_path / "hostd.db"
    old_release_database(path)
    Accounts(database).add_user("demo", "a demo password")

    with pytest.raises(LegacyImportError,
                       match=r"already holds other data \(users row name='demo' is in PostgreSQL but not in the file"):
        import_once(path, database)

    assert Accounts(database).users() == ["demo"]
    assert path.exists() and backups(tmp_path) == []


@pytest.mark.parametrize(("extra", "message"), [
    ({"flags": [("maybe", 2)]}, r"flags row name='maybe': column value: 2 where 0 or 1 belongs"),
    ({"users": [("nul", "a\x00b", 1, 1.0)]}, r"users row name='nul': column password_hash: text with a NUL"),
    ({"users": [("when", None, 1, "yesterday")]}, r"users row name='when': column created: 'yesterday'"),
    ({"tokens": [("t-x", "alice", "h", "read", None, 0, float("inf"))]}, r"tokens row id='t-x': column created"),
    # The release's connections enforced foreign keys, but a file edited by hand need not have.
    ({"grants": [("nobody", "alice", "notes", "read")]}, r"grants: .*foreign key.*\(username\)=\(nobody\)"),
], ids=["boolean-2", "nul-in-text", "text-time", "infinite-time", "dangling-grant"])
def test_values_the_schema_does_not_allow_stop_the_import_naming_the_row(
    tmp_path: Path, database: Database, extra: dict[str, list[tuple[Any, ...]]], message: str
) -> None:
    path = tmp_path / "hostd.db"
    old_release_database(path, extra=extra)

    with pytest.raises(LegacyImportError, match=message):
        import_once(path, database)

    assert all(rows == [] for rows in postgres_rows(database).values())
    assert path.exists()


def test_a_file_that_is_not_the_release_database_is_refused(tmp_path: Path, database: Database) -> None:
    path = tmp_path / "hostd.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(LegacyImportError, match="cannot read .* as a hostd SQLite database"):
        import_once(path, database)
    with pytest.raises(LegacyImportError, match="cannot open"):
        import_once(tmp_path / "missing.db", database)
