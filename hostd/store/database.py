"""The embedded account database (SQLite): schema and connections.

One connection per thread, opened lazily so a gunicorn worker never inherits
its master's connection across ``fork``. WAL mode lets the pools read while
the admin CLI writes; ``busy_timeout`` makes a writer wait instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
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


class Database:
    """Thread-local SQLite connections to one database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction, committed on success."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def create(self) -> None:
        """Create the schema (idempotent) and switch the file to WAL mode."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connection()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
