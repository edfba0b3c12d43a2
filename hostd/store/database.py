"""hostd's database (PostgreSQL): a connection pool per process, and one error for "unreachable".

Every process that serves or administers keeps one :class:`Database`. Its
pool is opened on first use and again in a process that finds it was made
in another one, so a gunicorn worker never uses its master's sockets across
``fork``. Connections are in autocommit mode: a read is one round trip, and
:meth:`Database.transaction` wraps the writes that belong together::

    db = Database("postgresql://hostd@/hostd?host=/srv/hostd/postgres")
    with db.connection() as conn:
        conn.execute("SELECT name FROM users").fetchall()
    with db.transaction() as conn:
        conn.execute("UPDATE ...")

A database that cannot be reached raises :class:`DatabaseUnavailable` within
``timeout`` seconds, never later, and for ``retry_interval`` seconds after
that at once, without trying (a circuit breaker): while PostgreSQL is down a
request costs no waiting, and its callers decide what still works (cached
records, see :mod:`hostd.store.records`) and what is refused (pushes, 503).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

Connection: TypeAlias = psycopg.Connection[DictRow]

# psycopg's pool warns at every reconnection attempt (about once a second per
# process while PostgreSQL is down, and on the command line's stderr); the
# one DatabaseUnavailable a caller gets, and the change feed's log lines of
# the outage and the recovery, say it once.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached (down, restarting, refusing connections)."""


class Database:
    """A per-process pool of connections to one PostgreSQL database.

    ``max_size`` is the number of threads of a worker that may hold a
    connection at once (gunicorn's ``threads``): no request waits for
    another's connection.
    """

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 4,
        timeout: float = 2.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._max_size = max_size
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Connection] | None = None
        self._pid = 0
        self._down_until = float("-inf")

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"<Database pool={self._max_size}>"

    @property
    def url(self) -> str:
        return self._url

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection of the pool, in autocommit mode, for reads."""
        with self._errors(), self._current().connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one transaction, committed when the block ends without an error."""
        with self._errors(), self._current().connection() as conn, conn.transaction():
            yield conn

    def ping(self) -> str | None:
        """None when a query succeeds now, else why not (for ``/readyz``)."""
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
        except DatabaseUnavailable as error:
            return f"database unreachable: {error}"
        return None

    def close(self) -> None:
        """Close this process's pool (a later use opens a new one)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=1.0)

    def reset(self) -> None:
        """Start afresh: a new pool and no pause, when PostgreSQL is known to be back (the change feed says so).

        The old pool may be waiting out a reconnection backoff of many
        seconds; a new one connects at once.
        """
        with self._lock:
            self._down_until = float("-inf")
        self.close()

    def _current(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._clock() < self._down_until:
                raise DatabaseUnavailable("down a moment ago; not retried yet")
            if self._pool is None or self._pid != os.getpid():
                # After fork the inherited pool's sockets and thread belong
                # to the parent: a child never touches them, it opens its own.
                self._pool = self._open()
                self._pid = os.getpid()
            return self._pool

    def _open(self) -> ConnectionPool[Connection]:
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row,
                                  "connect_timeout": max(1, round(self._timeout))}
        pool: ConnectionPool[Connection] = ConnectionPool(
            self._url, min_size=1, max_size=self._max_size, kwargs=kwargs,
            # A connection checked before it is lent: after PostgreSQL
            # restarts, the idle ones are dead, and no request may get one.
            timeout=self._timeout, check=ConnectionPool.check_connection, open=False, name="hostd",
        )
        pool.open(wait=False)
        return pool

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as error:
            if not _unreachable(error):
                raise
            self.mark_down()
            raise DatabaseUnavailable(_first_line(error)) from error

    def mark_down(self) -> None:
        """Fail at once for ``retry_interval`` seconds (also called by the change feed when it cannot connect)."""
        with self._lock:
            self._down_until = self._clock() + self._retry_interval


def _unreachable(error: Exception) -> bool:
    """Whether an error means the server cannot be used now, not that a statement was wrong.

    No SQLSTATE (the connection failed or broke), class 08 (connection
    exception) or 57P (the server is shutting down or restarting).
    """
    if isinstance(error, PoolTimeout | PoolClosed):
        return True  # PoolClosed: replaced by reset() while this request was taking a connection
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
