"""Feature flags: declared here, stored in the account database, read per request.

One mechanism for every flag. The account database is the source of truth
(``hostd flag set``); memcached spreads the current value to every worker so
that they do not all query the database; each process keeps what it read for
a couple of seconds so a request costs no I/O at all::

    flags = Flags(FlagStore(db), memcache)
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

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from hostd.database import Database
from singlemalt import SafeMemcache

log = logging.getLogger(__name__)

#: Seconds a process trusts what it read before asking memcached again: the
#: longest a worker can lag behind ``hostd flag set``.
LOCAL_TTL: Final = 2.0
#: Seconds a value lives in memcached: the longest a worker can lag when the
#: command line could not update memcached itself.
SHARED_TTL: Final = 10
#: Namespace of flag keys in the memcached the pools share with singlemalt;
#: :func:`key_prefix` adds the installation to it.
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
        row = self.db.connection().execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return None if row is None else bool(row["value"])

    def set(self, flag: Flag, value: bool) -> None:
        """Store a value for a declared flag."""
        declared(flag.name)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO flags (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (flag.name, int(value)),
            )

    def states(self) -> list[FlagState]:
        """Every declared flag with its current value, sorted by name.

        Rows for names no longer declared are ignored: the code decides which
        flags exist.
        """
        rows = self.db.connection().execute("SELECT name, value FROM flags")
        stored = {row["name"]: bool(row["value"]) for row in rows}
        return [
            FlagState(flag, stored.get(name, flag.default), name in stored)
            for name, flag in sorted(DECLARED.items())
        ]


def key_prefix(secret: bytes) -> str:
    """The flag key prefix of one installation, derived from its server secret.

    The command line and the pools read the same secret file, so they agree
    on it; an admin command pointed at the wrong memcached (another stack on
    the default port) cannot switch that stack's flags.
    """
    digest = hashlib.sha256(b"hostd flags\0" + secret).hexdigest()
    return f"{KEY_PREFIX}{digest[:16]}:"


def memcache_key(flag: Flag, prefix: str = KEY_PREFIX) -> str:
    """The memcached key of a flag's value."""
    return prefix + flag.name


def publish(
    memcache: SafeMemcache, flag: Flag, value: bool, *, prefix: str = KEY_PREFIX, ttl: int = SHARED_TTL
) -> bool:
    """Put a value just written to the database into memcached; whether it got there.

    Best effort: if it did not, workers still see the change once the old
    value expires from memcached (``ttl``) and from their own cache.
    """
    return memcache.set(memcache_key(flag, prefix), _encode(value), expire=ttl)


class FlagReader(Protocol):
    """What request handling needs: the current value of a flag, never an exception."""

    def enabled(self, flag: Flag) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Known:
    value: bool
    fresh_until: float


class Flags:
    """Flag values for request handling: process cache, then memcached, then the database.

    Thread-safe (gunicorn threads share one instance). ``memcache`` defaults
    to none at all, so every refresh reads ``source``; ``prefix`` must be the
    one :func:`publish` is given (see :func:`key_prefix`).
    """

    def __init__(
        self,
        source: FlagSource,
        memcache: SafeMemcache | None = None,
        *,
        prefix: str = KEY_PREFIX,
        local_ttl: float = LOCAL_TTL,
        shared_ttl: int = SHARED_TTL,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._memcache = memcache if memcache is not None else SafeMemcache(None)
        self._prefix = prefix
        self._local_ttl = local_ttl
        self._shared_ttl = shared_ttl
        self._log_interval = log_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self._next_log = float("-inf")
        self._unreported = 0

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
        key = memcache_key(flag, self._prefix)
        shared = _decode(self._memcache.get(key))
        if shared is not None:
            return shared
        stored = self._source.get(flag.name)
        value = flag.default if stored is None else stored
        # ``add``, not ``set``: if ``hostd flag set`` published a newer value
        # since the database was read, that value wins.
        self._memcache.add(key, _encode(value), expire=self._shared_ttl)
        return value

    def _report(self, flag: Flag, error: Exception, value: bool) -> None:
        with self._lock:
            now = self._clock()
            self._unreported += 1
            if now < self._next_log:
                return
            self._next_log = now + self._log_interval
            failures, self._unreported = self._unreported, 0
        log.warning(
            "flag %s unreadable (%s: %s); using %s (%d failures since last report)",
            flag.name, type(error).__name__, error, "on" if value else "off", failures,
        )


def _encode(value: bool) -> bytes:
    return b"1" if value else b"0"


def _decode(raw: bytes | None) -> bool | None:
    """A value from memcached; None for a miss or anything that is not ours."""
    if raw == b"1":
        return True
    if raw == b"0":
        return False
    return None
