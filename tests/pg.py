"""PostgreSQL for the tests: a throwaway cluster, or the server ``HOSTD_DATABASE_URL`` names.

Every test that needs a database gets a new one, copied from a template
migrated once per session (:func:`new_database`), so tests never see each
other's rows. By default the session runs its own cluster (hostd's
``hostd.ops.postgres``, in a temporary directory, on a unix socket); with
``HOSTD_DATABASE_URL`` set when pytest starts, every database (the stacks'
too: :func:`stack_environment`) is created on that server instead, which is
how CI runs the whole suite against an external PostgreSQL. The variable is
taken out of the environment at start (``tests/conftest.py``), so no child
process connects to the server's own database by accident.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.rows

from hostd.ops import postgres
from hostd.settings import Settings
from hostd.store import schema

#: The server given from outside (``HOSTD_DATABASE_URL`` when the session started), or None.
EXTERNAL: str | None = None

_lock = threading.Lock()
_server: _Server | None = None


class _Server:
    """A PostgreSQL server on which the session creates its databases."""

    def __init__(self, url: str, cleanup: ExitStack) -> None:
        self.url = url
        self.cleanup = cleanup
        self.template = f"hostd_template_{os.getpid()}"
        self.created: list[str] = []
        self._admin(f'CREATE DATABASE "{self.template}"')
        schema.upgrade(with_database(url, self.template))

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self, migrated: bool) -> str:
        name = f"hostd_test_{uuid.uuid4().hex[:16]}"
        template = self.template if migrated else "template0"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.created.append(name)
        return with_database(self.url, name)

    def close(self) -> None:
        if EXTERNAL is not None:
            for name in [*self.created, self.template]:
                try:
                    self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except psycopg.Error:
                    pass
        self.cleanup.close()


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _start() -> _Server:
    cleanup = ExitStack()
    if EXTERNAL is not None:
        return _Server(EXTERNAL, cleanup)
    root = Path(tempfile.mkdtemp(prefix="hostd-test-pg-"))
    cleanup.callback(shutil.rmtree, root, ignore_errors=True)
    settings = Settings(data_dir=root)
    postgres.ensure_cluster(settings)
    cleanup.enter_context(postgres.temporary_server(settings))
    return _Server(with_database(settings.database, "postgres"), cleanup)


def server() -> _Server:
    """The session's server, started on first use and stopped at the end of the session (or at exit)."""
    global _server
    with _lock:
        if _server is None:
            _server = _start()
            atexit.register(close)
        return _server


def close() -> None:
    """Stop the session's server (``tests/conftest.py`` calls it as the session ends, while
    the log handlers of in-process pools still have somewhere to write their feeds' last words)."""
    global _server
    with _lock:
        running, _server = _server, None
    if running is not None:
        running.close()


def new_database(*, migrated: bool = True) -> str:
    """The URL of a new database, at the newest schema unless ``migrated`` is False (then empty)."""
    return server().new_database(migrated)


def stack_environment() -> dict[str, str]:
    """What a test stack needs to use the external server (nothing: it runs its own cluster)."""
    if EXTERNAL is None:
        return {}
    return {"HOSTD_DATABASE_URL": new_database(migrated=False)}


def reachable(path: Path) -> None:
    """Let the stack's own PostgreSQL (as root: the ``postgres`` user) pass through ``path``'s parents.

    pytest makes its temporary directories 0700; run as root, a cluster inside
    one could not be reached by the user it runs as. Traversal only (0711),
    and only for the directories pytest made.
    """
    if os.geteuid() != 0:
        return
    base = Path(tempfile.gettempdir()).resolve()
    for place in [path, *path.parents]:
        if place == base or base not in place.parents:
            break
        place.chmod(place.stat().st_mode | 0o011)


#: Columns added since the SQLite release, and the value every row imported from it must hold.
ADDED_SINCE_RELEASE: dict[str, dict[str, object]] = {"repos": {"shard": "default", "moving_to": None},
                                                    "tokens": {"label": ""}}


def rows_as_released(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    """A table's rows in the SQLite release's columns, sorted; AssertionError if a column
    added since does not hold its value for an imported row."""
    rows = []
    for row in conn.cursor(row_factory=psycopg.rows.dict_row).execute(f"SELECT * FROM {table}").fetchall():
        for column, value in ADDED_SINCE_RELEASE.get(table, {}).items():
            assert row.pop(column) == value, (table, column, row)
        rows.append(tuple(row.values()))
    return sorted(rows, key=repr)
