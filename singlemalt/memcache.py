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

Several servers are a cluster, and each server has its own breaker::

    SafeMemcache(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])

A key lives on the first server of its rendezvous order (a hash of server
and key, the same in every process); while that server's breaker is open
its keys go to the next one, and the other servers' keys do not move.  An
operation whose server fails is done on the next one at once, so a write
that finds its node dead is not lost.  So a dead node costs each process
one timeout per ``retry_interval`` (one per thread already waiting on it),
the keys on live nodes keep working, and a node that answers again gets its
keys back (the first request after the interval tries it, the others keep
going around it until that try succeeds).  A node that comes back may hold
stale entries, and what was written elsewhere meanwhile is out of sight
again: callers bind what they cache to what it depends on (the
verification cache's key includes the stored hash), and treat a counter or
a lock as something that can be lost, as in a restart.

This is not pymemcache's ``HashClient`` (4.0), which fails the operation
that finds a node dead, takes a node out only on ``OSError`` (a connection
the server closed, ``MemcacheUnexpectedCloseError``, does not count), keeps
its failure state in dicts that gunicorn's threads would share unlocked,
times it with the wall clock, re-admits a node up to twice
``dead_timeout`` later, and cannot say which node failed.  A factory
returning any client with pymemcache's ``get/get_many/set/add/incr/delete/touch``
works too, as one node.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, MutableSet, Sequence
from typing import Any, Protocol, TypeVar

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheIllegalInputError

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

    def close(self) -> Any: ...


#: ``"host:port"`` (or ``"unix:/path"``) of a server, a list of them, a client
#: factory, or ``None`` (or an empty list) when memcached is not configured.
Servers = str | Sequence[str] | Callable[[], MemcacheClient] | None


class _NodeFailed(Exception):
    """A node did not answer (logged, and its breaker opened): the caller tries the next one."""


class _Node:
    """One server: its client, its place in every key's order, and its breaker (guarded by the owner's lock)."""

    __slots__ = ("client", "down_until", "name", "outage", "reports", "seed")

    def __init__(self, name: str, client: MemcacheClient, reports: LogBudget) -> None:
        self.name = name
        self.client = client
        self.reports = reports
        self.seed = name.encode("utf-8", "surrogatepass") + b"\0"
        #: Nothing is sent before this (monotonic) time.
        self.down_until = float("-inf")
        #: Failed, and not yet seen answering again.
        self.outage = False

    def score(self, key: bytes) -> bytes:
        """The node's rank for ``key``: a hash every process computes alike (``hash()`` is per process)."""
        return hashlib.blake2b(self.seed + key, digest_size=8).digest()


class SafeMemcache:
    """Failure-tolerant memcached access shared by the cache and the throttle.

    Thread-safe: the pymemcache clients are pooled, and the breakers are
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
        self._nodes = tuple(
            _Node(name, client, LogBudget(log_interval, clock)) for name, client in _make_clients(servers, timeout)
        )
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._rejected = LogBudget(log_interval, clock)

    def __repr__(self) -> str:
        return f"<SafeMemcache {[node.name for node in self._nodes]}>"

    @property
    def configured(self) -> bool:
        """Whether there is a memcached to talk to at all."""
        return bool(self._nodes)

    def get(self, key: str) -> bytes | None:
        """The stored value, or ``None`` on a miss or any failure."""
        value = self._call("get", key, None, lambda client: client.get(key))
        return value if isinstance(value, bytes) else None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that have one, one round trip per node; ``{}`` if all fail."""
        claimed: MutableSet[_Node] = set()
        failed: MutableSet[_Node] = set()
        found: dict[str, Any] = {}
        pending = list(keys)
        while pending:  # each round either empties it or adds a node to ``failed``
            batches: dict[_Node, list[str]] = {}
            for key in pending:
                node = self._route(key, claimed, failed)
                if node is not None:
                    batches.setdefault(node, []).append(key)
            pending = []
            for node, batch in batches.items():
                try:
                    found.update(self._get_batch(node, batch))
                except _NodeFailed:
                    failed.add(node)
                    pending += batch
        return {key: value for key, value in found.items() if isinstance(value, bytes)}

    def set(self, key: str, value: bytes, *, expire: int = 0) -> bool:
        """Store a value; ``False`` if it was not stored."""
        stored = self._call("set", key, False, lambda c: c.set(key, value, expire, noreply=False))
        return stored is True

    def add(self, key: str, value: bytes, *, expire: int = 0) -> bool:
        """Store a value only if the key is absent; ``False`` if it exists or on failure."""
        stored = self._call("add", key, False, lambda c: c.add(key, value, expire, noreply=False))
        return stored is True

    def incr(self, key: str, delta: int = 1) -> int | None:
        """Atomically add to a counter; ``None`` if the key is absent or on failure."""
        value = self._call("incr", key, None, lambda c: c.incr(key, delta, noreply=False))
        return value if isinstance(value, int) else None

    def delete(self, key: str) -> bool:
        """Remove a key; ``False`` if it was absent or on failure."""
        deleted = self._call("delete", key, False, lambda c: c.delete(key, noreply=False))
        return deleted is True

    def touch(self, key: str, *, expire: int) -> bool:
        """Give an existing key a new expiry; ``False`` if it was absent or on failure."""
        touched = self._call("touch", key, False, lambda c: c.touch(key, expire, noreply=False))
        return touched is True

    def _call(self, operation: str, key: str, default: _T, call: Callable[[MemcacheClient], _T]) -> _T:
        """``call`` on the node ``key`` lives on; if that node fails, on the next one (none is tried twice)."""
        claimed: MutableSet[_Node] = set()
        failed: MutableSet[_Node] = set()
        while (node := self._route(key, claimed, failed)) is not None:
            try:
                return self._run(node, operation, default, call)
            except _NodeFailed:
                failed.add(node)
        return default

    def _get_batch(self, node: _Node, keys: list[str]) -> dict[str, Any]:
        return self._run(node, "get_many", {}, lambda client: client.get_many(keys))

    def _route(self, key: str, claimed: MutableSet[_Node], failed: MutableSet[_Node]) -> _Node | None:
        """The first node in ``key``'s order whose breaker is closed, or ``None`` if every one is open.

        A node whose interval is over is claimed for one try (its breaker
        stays open for everyone else until that try answers), and stays
        usable by the operation that claimed it (``claimed``).
        """
        nodes = self._nodes
        if len(nodes) > 1:
            raw = key.encode("utf-8", "surrogatepass")
            nodes = tuple(sorted(nodes, key=lambda node: node.score(raw), reverse=True))
        now = self._clock()
        with self._lock:
            for node in nodes:
                if node in failed:
                    continue
                if node in claimed or now >= node.down_until:
                    if node.outage:
                        node.down_until = now + self._retry_interval
                        claimed.add(node)
                    return node
        return None

    def _run(self, node: _Node, operation: str, default: _T, call: Callable[[MemcacheClient], _T]) -> _T:
        try:
            result = call(node.client)
        except MemcacheIllegalInputError as error:
            # The caller's key or value, not the node: nothing to back off from.
            self._reject(operation, error)
            return default
        # Any other failure at all (socket, protocol, pymemcache's own errors)
        # means the next node, then a miss: memcached never fails a request.
        except Exception as error:  # noqa: BLE001
            self._failed(node, operation, error)
            raise _NodeFailed from error
        if node.outage:
            self._recovered(node)
        return result

    def _failed(self, node: _Node, operation: str, error: Exception) -> None:
        with self._lock:
            node.down_until = self._clock() + self._retry_interval
            node.outage = True
        # Idle pooled connections to a restarted server are all dead: drop
        # them, or each would fail one try and keep the node out another interval.
        with contextlib.suppress(Exception):
            node.client.close()
        failures = node.reports.spend()
        if failures is None:
            return
        where = "its keys go to the other nodes" if len(self._nodes) > 1 else "bypassing memcached"
        log.warning(
            "memcached %s: %s failed (%s: %s); %s for %gs (%d failures since last report)",
            node.name, operation, type(error).__name__, error, where, self._retry_interval, failures,
        )

    def _recovered(self, node: _Node) -> None:
        with self._lock:
            was_down, node.outage = node.outage, False
            node.down_until = float("-inf")
        if was_down:
            log.info("memcached %s is reachable again", node.name)

    def _reject(self, operation: str, error: Exception) -> None:
        rejected = self._rejected.spend()
        if rejected is not None:
            log.warning("memcached %s refused (%s) (%d since last report)", operation, error, rejected)


def _make_clients(servers: Servers, timeout: float) -> list[tuple[str, MemcacheClient]]:
    if callable(servers):
        return [("memcached", servers())]
    if isinstance(servers, str):
        servers = [servers]
    options: dict[str, Any] = {"connect_timeout": timeout, "timeout": timeout, "no_delay": True}
    return [(server, PooledClient(server, **options)) for server in dict.fromkeys(servers or ()) if server]
