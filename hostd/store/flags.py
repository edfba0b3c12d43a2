"""Feature flags: declared here, stored in the account database, read per request.

One mechanism for every flag. The account database is the source of truth
(``hostd flag set``); memcached spreads the current value to every worker so
that they do not all query the database, sealed with the server secret so
that nobody else can switch a flag there (:class:`SharedFlags`); each process
keeps what it read for a couple of seconds so a request costs no I/O at all::

    flags = Flags(FlagStore(db), SharedFlags(memcache, secret))
    if flags.enabled(READ_ONLY):   # in request handling only
        ...

A flag is read in request handling only, and reading one never raises: if
memcached or the database fails, :class:`Flags` answers with the last value
it knew, or with the flag's declared default, and logs that at most once per
interval. The logging setup must not import this module (an import-linter
contract in ``pyproject.toml`` enforces it): a logging path that can fail was
how one memcached error became an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from hostd.store.database import Database
from singlemalt import SafeMemcache, Sealer
from singlemalt.logbudget import LogBudget

log = logging.getLogger(__name__)

#: Seconds a process trusts what it read before asking memcached again: the
#: longest a worker can lag behind ``hostd flag set``.
LOCAL_TTL: Final = 2.0
#: Seconds a value lives in memcached: the longest a worker can lag when the
#: command line could not update memcached itself.
SHARED_TTL: Final = 10
#: Namespace of flag keys in the memcached the pools share with singlemalt;
#: the rest of a key is an HMAC of the flag's name under the server secret.
KEY_PREFIX: Final = "hostd:flag:"


class FlagError(ValueError):
    """A flag name that is not declared; the message is shown as is."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A declared flag: its name, the value it has until set, and what it does."""

    name: str
    default: bool
    description: str


READ_ONLY: Final = Flag(
    "read_only", False,
    "refuse every push (git and hg) with 503 for maintenance; clones and pulls continue",
)

#: Every flag there is. Frozen: a flag is declared in code, with its default,
#: never created by writing a name into the database.
DECLARED: Final[Mapping[str, Flag]] = MappingProxyType({flag.name: flag for flag in (READ_ONLY,)})


def declared(name: str) -> Flag:
    """The declared flag called ``name``; :class:`FlagError` if there is none."""
    flag = DECLARED.get(name)
    if flag is None:
        raise FlagError(f"no such flag: {name!r} (declared: {', '.join(sorted(DECLARED))})")
    return flag


@dataclass(frozen=True, slots=True)
class FlagState:
    """A flag's current value, and whether it was set or is the default."""

    flag: Flag
    value: bool
    stored: bool


class FlagSource(Protocol):
    """Where :class:`Flags` reads the truth: a stored value, or None when unset."""

    def get(self, name: str) -> bool | None: ...


class FlagStore:
    """The ``flags`` table of the account database: the source of truth."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> bool | None:
        """The stored value, or None if the flag was never set (it has its default)."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT value FROM flags WHERE name = %s", (name,)).fetchone()
        return None if row is None else bool(row["value"])

    def set(self, flag: Flag, value: bool) -> None:
        """Store a value for a declared flag."""
        declared(flag.name)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO flags (name, value) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (flag.name, value),
            )

    def states(self) -> list[FlagState]:
        """Every declared flag with its current value, sorted by name.

        Rows for names no longer declared are ignored: the code decides which
        flags exist.
        """
        with self.db.connection() as conn:
            rows = conn.execute("SELECT name, value FROM flags").fetchall()
        stored = {row["name"]: bool(row["value"]) for row in rows}
        return [
            FlagState(flag, stored.get(name, flag.default), name in stored)
            for name, flag in sorted(DECLARED.items())
        ]


class SharedFlags:
    """Flag values in the memcached the pools share, sealed with the server secret.

    memcached lets anyone who reaches it list and write keys, so a flag's key
    is an HMAC of its name (nobody without the secret can tell which key is
    read-only mode, or compute it; two installations sharing a memcached
    keep apart) and its value carries a MAC over key, value and expiry
    (:mod:`singlemalt.sealed`). A value written by anyone else is ignored,
    logged and removed, and the database answers instead. What remains: a
    genuine value read by someone and written back later is accepted until
    its own expiry, at most ``ttl`` seconds after it was sealed.
    """

    def __init__(self, memcache: SafeMemcache, secret: bytes, *, ttl: int = SHARED_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self._memcache = memcache
        self._sealer = Sealer(secret, KEY_PREFIX, clock=clock)
        self.ttl = ttl

    def key(self, flag: Flag) -> str:
        """The memcached key of a flag's value."""
        return self._sealer.key(flag.name)

    def read(self, flag: Flag) -> bool | None:
        """The published value, or None: absent, expired, forged, or memcached down."""
        key = self.key(flag)
        raw = self._memcache.get(key)
        opened = self._sealer.open(key, raw)
        if opened is None:
            if raw is not None:
                # Not ours (or stale): remove it, or ``offer`` could never
                # replace it and every worker would read the database.
                self._memcache.delete(key)
            return None
        return _decode(opened.payload)

    def publish(self, flag: Flag, value: bool) -> bool:
        """Put a value just written to the database into memcached; whether it got there.

        Best effort: if it did not, workers still see the change once the old
        value expires from memcached (``ttl``) and from their own cache.
        """
        key = self.key(flag)
        return self._memcache.set(key, self._sealer.seal(key, _encode(value), ttl=self.ttl), expire=self.ttl)

    def offer(self, flag: Flag, value: bool) -> bool:
        """Share a value read from the database, unless one was published meanwhile (``add``, not ``set``)."""
        key = self.key(flag)
        return self._memcache.add(key, self._sealer.seal(key, _encode(value), ttl=self.ttl), expire=self.ttl)


class FlagReader(Protocol):
    """What request handling needs: the current value of a flag, never an exception."""

    def enabled(self, flag: Flag) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Known:
    value: bool
    fresh_until: float


class Flags:
    """Flag values for request handling: process cache, then memcached, then the database.

    Thread-safe (gunicorn threads share one instance). ``shared`` defaults to
    no memcached at all, so every refresh reads ``source``.
    """

    def __init__(
        self,
        source: FlagSource,
        shared: SharedFlags | None = None,
        *,
        local_ttl: float = LOCAL_TTL,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._shared = shared
        self._local_ttl = local_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self._reports = LogBudget(log_interval, clock)

    def enabled(self, flag: Flag) -> bool:
        """The flag's value; on any failure the last known value or the default."""
        now = self._clock()
        with self._lock:
            known = self._known.get(flag.name)
        if known is not None and now < known.fresh_until:
            return known.value
        try:
            value = self._load(flag)
        # Whatever fails (memcached, a locked or missing database, a bad
        # row), a flag read must not fail the request that asked.
        except Exception as error:  # noqa: BLE001
            value = known.value if known is not None else flag.default
            self._report(flag, error, value)
        with self._lock:
            # A failed read is remembered too, so an outage costs one attempt
            # per flag per ``local_ttl``, not one per request.
            self._known[flag.name] = _Known(value, now + self._local_ttl)
        return value

    def _load(self, flag: Flag) -> bool:
        shared = None if self._shared is None else self._shared.read(flag)
        if shared is not None:
            return shared
        stored = self._source.get(flag.name)
        value = flag.default if stored is None else stored
        if self._shared is not None:
            # Offered, not set: if ``hostd flag set`` published a newer value
            # since the database was read, that value wins.
            self._shared.offer(flag, value)
        return value

    def _report(self, flag: Flag, error: Exception, value: bool) -> None:
        failures = self._reports.spend()
        if failures is None:
            return
        log.warning(
            "flag %s unreadable (%s: %s); using %s (%d failures since last report)",
            flag.name, type(error).__name__, error, "on" if value else "off", failures,
        )


def _encode(value: bool) -> bytes:
    return b"on" if value else b"off"


def _decode(payload: bytes) -> bool | None:
    """A sealed payload; None for anything :func:`_encode` does not write."""
    if payload == b"on":
        return True
    if payload == b"off":
        return False
    return None
