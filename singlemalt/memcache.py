"""A memcached client that never raises and does not wait on a dead server.

singlemalt uses memcached only as an optimisation (the verification cache)
and as a soft limit (the login throttle), so memcached being down, slow or
not configured must never turn into an error or a slow request.  Every
operation returns a miss (``None``/``False``) on failure; after a failure the
server is left alone for ``retry_interval`` seconds (a circuit breaker, so a
dead memcached costs one timeout per interval instead of one per request),
and failures are logged at most once per ``log_interval``::

    memcache = SafeMemcache("127.0.0.1:11211", timeout=0.25)
    memcache.set("key", b"value", expire=60)
    memcache.get("key")          # b"value", or None if memcached is down
    SafeMemcache(None).get("k")  # memcached not configured: always a miss

Several servers spread the keys with pymemcache's ``HashClient``; a factory
returning any client with pymemcache's ``get/set/add/incr/delete`` works
too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

from singlemalt.logbudget import LogBudget

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class MemcacheClient(Protocol):
    """The subset of pymemcache's client API that :class:`SafeMemcache` uses."""

    def get(self, key: str) -> Any: ...

    def get_many(self, keys: list[str]) -> Any: ...

    def set(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any: ...

    def add(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any: ...

    def incr(self, key: str, value: int, noreply: bool = False) -> Any: ...

    def delete(self, key: str, noreply: bool | None = None) -> Any: ...

    def touch(self, key: str, expire: int = 0, noreply: bool | None = None) -> Any: ...


#: ``"host:port"`` (or ``"unix:/path"``) of a server, a list of them, a client
#: factory, or ``None`` (or an empty list) when memcached is not configured.
Servers = str | Sequence[str] | Callable[[], MemcacheClient] | None


class SafeMemcache:
    """Failure-tolerant memcached access shared by the cache and the throttle.

    Thread-safe: the pymemcache clients are pooled, and the breaker state is
    guarded by a lock.
    """

    def __init__(
        self,
        servers: Servers = None,
        *,
        timeout: float = 0.25,
        retry_interval: float = 10.0,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = _make_client(servers, timeout, retry_interval)
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = float("-inf")
        self._reports = LogBudget(log_interval, clock)
        self._outage = False

    @property
    def configured(self) -> bool:
        """Whether there is a memcached to talk to at all."""
        return self._client is not None

    def get(self, key: str) -> bytes | None:
        """The stored value, or ``None`` on a miss or any failure."""
        value = self._call("get", None, lambda client: client.get(key))
        return value if isinstance(value, bytes) else None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that have one, in one round trip; ``{}`` on any failure."""
        found: dict[str, Any] = self._call("get_many", {}, lambda client: client.get_many(list(keys)))
        return {key: value for key, value in found.items() if isinstance(value, bytes)}

    def set(self, key: str, value: bytes, *, expire: int = 0) -> bool:
        """Store a value; ``False`` if it was not stored."""
        stored = self._call("set", False, lambda c: c.set(key, value, expire, noreply=False))
        return stored is True

    def add(self, key: str, value: bytes, *, expire: int = 0) -> bool:
        """Store a value only if the key is absent; ``False`` if it exists or on failure."""
        stored = self._call("add", False, lambda c: c.add(key, value, expire, noreply=False))
        return stored is True

    def incr(self, key: str, delta: int = 1) -> int | None:
        """Atomically add to a counter; ``None`` if the key is absent or on failure."""
        value = self._call("incr", None, lambda c: c.incr(key, delta, noreply=False))
        return value if isinstance(value, int) else None

    def delete(self, key: str) -> bool:
        """Remove a key; ``False`` if it was absent or on failure."""
        deleted = self._call("delete", False, lambda c: c.delete(key, noreply=False))
        return deleted is True

    def touch(self, key: str, *, expire: int) -> bool:
        """Give an existing key a new expiry; ``False`` if it was absent or on failure."""
        touched = self._call("touch", False, lambda c: c.touch(key, expire, noreply=False))
        return touched is True

    def _call(self, operation: str, default: _T, call: Callable[[MemcacheClient], _T]) -> _T:
        client = self._client
        if client is None:
            return default
        with self._lock:
            if self._clock() < self._down_until:
                return default
        try:
            result = call(client)
        # Any failure at all (socket, protocol, pymemcache's own errors) means
        # a miss: memcached is never allowed to fail a request.
        except Exception as error:  # noqa: BLE001
            self._failed(operation, error)
            return default
        if self._outage:
            self._recovered()
        return result

    def _failed(self, operation: str, error: Exception) -> None:
        with self._lock:
            now = self._clock()
            self._down_until = now + self._retry_interval
            self._outage = True
        failures = self._reports.spend()
        if failures is None:
            return
        log.warning(
            "memcached %s failed (%s: %s); bypassing memcached for %gs (%d failures since last report)",
            operation, type(error).__name__, error, self._retry_interval, failures,
        )

    def _recovered(self) -> None:
        with self._lock:
            was_down, self._outage = self._outage, False
        if was_down:
            log.info("memcached is reachable again")


def _make_client(servers: Servers, timeout: float, retry: float) -> MemcacheClient | None:
    if callable(servers):
        return servers()
    if isinstance(servers, str):
        servers = [servers]
    servers = [server for server in servers or () if server]
    options: dict[str, Any] = {"connect_timeout": timeout, "timeout": timeout, "no_delay": True}
    if not servers:
        return None
    if len(servers) == 1:
        single: MemcacheClient = PooledClient(servers[0], **options)
        return single
    # HashClient gives up on a server at its first failure (raising once,
    # which opens the breaker above) and moves its keys to the others until
    # it is retried after ``retry`` seconds.
    hashed: MemcacheClient = HashClient(
        servers, use_pooling=True, retry_attempts=0, dead_timeout=retry, **options
    )
    return hashed
