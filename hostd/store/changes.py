"""The change feed: PostgreSQL tells this process when accounts, repositories or grants change.

Migration 0002 makes every statement that changes ``users``, ``tokens``,
``repos``, ``grants`` or ``flags`` send ``NOTIFY hostd_changes, '<table>'``
when its transaction commits. One :class:`ChangeFeed` per process keeps a
connection that ``LISTEN``\\ s on that channel, in a daemon thread, and calls
its subscribers with the table's name; :mod:`hostd.store.records` forgets
what it cached from that table::

    feed = ChangeFeed(settings.database, on_down=db.mark_down)
    feed.subscribe(records.invalidate)      # called with "users", ..., or None
    if feed.connected: ...                  # may cached records be trusted?

Why a connection of its own: a notification is only delivered to a session
that is listening, so the pool's connections (lent out and returned) cannot
do it. What the feed guarantees and what it cannot:

* While ``connected`` is True, every change committed after the ``LISTEN``
  reaches the subscribers (within milliseconds of the commit).
* Notifications sent while the feed was disconnected are lost, so every
  successful (re)connect calls the subscribers with ``None`` ("everything
  may have changed") *before* ``connected`` becomes True again.
* A dead connection is noticed at once when the server closes it (restart,
  shutdown: the socket reports EOF); across a silent network partition, by
  TCP keepalives and ``tcp_user_timeout`` in the connection parameters and a
  ``SELECT 1`` every ``idle_check`` seconds without notifications. Until it
  is noticed, ``connected`` is still True: that window is the one way a
  change can be missed, and it is bounded by those timeouts.

The thread is started on first use, and again in a process that finds the
feed was started by another one (after ``fork`` a child has the parent's
object but not its thread or socket), like :class:`~hostd.store.database.Database`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

import psycopg

log = logging.getLogger(__name__)

CHANNEL: Final = "hostd_changes"
_STEP: Final = 0.5

#: Libpq parameters of the feed's connection. Keepalives and the user
#: timeout bound how long a silent network partition goes unnoticed (a unix
#: socket has neither, and needs neither: its peer cannot vanish silently).
CONNECT_OPTIONS: Final = {
    "autocommit": True,
    "connect_timeout": 2,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}

#: A subscriber: called with a table's name, or None for "everything".
Subscriber = Callable[[str | None], None]


class ChangeFeed:
    """One listening connection per process, and the callbacks it drives.

    ``on_down`` is called when a connection attempt fails (the database's
    circuit breaker: requests then fail fast instead of each trying to
    connect); ``on_up`` when the feed connects again after it could not (the
    database is back: the pools' connection pool, which may be waiting out
    a long reconnection backoff, can be replaced by a fresh one);
    ``idle_check`` is how often an idle connection is probed; ``backoff`` the
    first and the longest wait between connection attempts.
    """

    def __init__(
        self,
        url: str,
        *,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[], None] | None = None,
        idle_check: float = 5.0,
        backoff: tuple[float, float] = (0.2, 2.0),
    ) -> None:
        self._url = url
        self._on_down = on_down
        self._on_up = on_up
        self._troubled = False
        self._since: float | None = None
        self._idle_check = idle_check
        self._backoff = backoff
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._opened = False

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"<ChangeFeed connected={self._connected.is_set()}>"

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` on every change (with the table) and after every reconnect (with None)."""
        with self._lock:
            self._subscribers.append(subscriber)

    @property
    def connected(self) -> bool:
        """Whether changes reach the subscribers now (starts the feed if it is not running here)."""
        self.start()
        return self._connected.is_set()

    def connected_for(self, seconds: float) -> bool:
        """Whether the feed has been connected for at least ``seconds`` without a break.

        Right after PostgreSQL comes back, the feed is connected before the
        pools' own connections work again (their pool, their circuit
        breaker): a caller that needs the database itself asks this.
        """
        self.start()
        since = self._since
        return self._connected.is_set() and since is not None and time.monotonic() - since >= seconds

    def wait_connected(self, timeout: float) -> bool:
        """Start the feed and wait up to ``timeout`` seconds for it to be connected."""
        self.start()
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Run the listening thread in this process (idempotent; cheap when already running)."""
        pid = os.getpid()
        if self._pid == pid and self._thread is not None:
            return
        with self._lock:
            if self._pid == pid and self._thread is not None:
                return
            # A forked child inherits a "connected" that was its parent's.
            self._connected.clear()
            self._stop.clear()
            self._opened = False
            self._thread = threading.Thread(target=self._run, name="hostd-change-feed", daemon=True)
            self._pid = pid
            self._thread.start()

    def close(self) -> None:
        """Stop listening (for tests and orderly shutdown); a later use starts again."""
        with self._lock:
            thread, self._thread = self._thread, None
            pid, self._pid = self._pid, 0
            self._stop.set()
        if thread is None or pid != os.getpid():
            return
        thread.join(timeout=5.0)
        self._connected.clear()

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                self._listen()
                delay = self._backoff[0]
            # Whatever goes wrong, the thread lives on and tries again: a
            # feed that died silently would leave "connected" False for good
            # (every lookup a query), or worse, True.
            except Exception as error:  # noqa: BLE001
                if self._stop.is_set():
                    break
                refused = not self._opened
                self._lost(error, refused=refused)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
            finally:
                self._opened = False

    def _listen(self) -> None:
        """Connect, LISTEN, invalidate everything, then deliver notifications until the connection dies."""
        with psycopg.connect(self._url, **CONNECT_OPTIONS) as conn:  # type: ignore[arg-type]
            self._opened = True
            conn.execute(f"LISTEN {CHANNEL}")
            if self._troubled and self._on_up is not None:
                self._on_up()
            self._troubled = False
            # Changes made while nobody listened were never delivered:
            # whatever was cached before is suspect.
            self._notify(None)
            if not self._connected.is_set():
                log.info("change feed connected: cached records are trusted again")
            self._since = time.monotonic()
            self._connected.set()
            idle = 0.0
            while not self._stop.is_set():
                # Short waits, so that close() is heard within one of them.
                step = min(self._idle_check, _STEP)
                idle += step
                for notification in conn.notifies(timeout=step):
                    idle = 0.0
                    self._notify(notification.payload or None)
                if idle >= self._idle_check:
                    # Nothing for a while: prove the connection is alive.
                    conn.execute("SELECT 1")
                    idle = 0.0

    def _lost(self, error: Exception, *, refused: bool) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._since = None
        self._troubled = True
        if refused and self._on_down is not None:
            self._on_down()
        if was_connected:
            log.warning("change feed lost its connection (%s): reading records from the database",
                        _first_line(error))
        elif not isinstance(error, psycopg.Error):
            log.error("change feed failed: %r", error)
        else:
            log.debug("change feed cannot connect: %s", _first_line(error))

    def _notify(self, table: str | None) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(table)
            except Exception:
                # A broken subscriber must not stop the others from hearing.
                log.exception("change feed subscriber %r failed", subscriber)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
