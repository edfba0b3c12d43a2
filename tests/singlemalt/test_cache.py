"""VerificationCache: keys bind username, version and password; local LRU; shared memcached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import PooledClient

from singlemalt.cache import VerificationCache
from singlemalt.memcache import SafeMemcache

from .conftest import Memcached

SECRET = b"0123456789abcdef-test-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Recording:
    """Wraps a real client and records every key and value sent to memcached."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.seen.append(args)
            return method(*args, **kwargs)

        return call


def test_local_only() -> None:
    cache = VerificationCache(None, SECRET)
    assert not cache.contains("alice", 1, "pw")
    cache.add("alice", 1, "pw")
    assert cache.contains("alice", 1, "pw")
    assert not cache.contains("alice", 2, "pw")
    assert not cache.contains("alice", 1, "pw2")
    assert not cache.contains("bob", 1, "pw")


def test_shared_between_workers_through_memcached(memcache: SafeMemcache) -> None:
    secret = SECRET + b"shared"
    VerificationCache(memcache, secret).add("alice", 7, "pw")
    other_worker = VerificationCache(memcache, secret)
    assert other_worker.contains("alice", 7, "pw")
    assert not other_worker.contains("alice", 8, "pw")
    assert not VerificationCache(memcache, secret + b"x").contains("alice", 7, "pw")


def test_local_entries_expire() -> None:
    clock = FakeClock()
    cache = VerificationCache(None, SECRET, local_ttl=30, clock=clock)
    cache.add("alice", 1, "pw")
    clock.now += 29
    assert cache.contains("alice", 1, "pw")
    clock.now += 2
    assert not cache.contains("alice", 1, "pw")


def test_expired_local_entry_falls_back_to_memcached(memcache: SafeMemcache) -> None:
    clock = FakeClock()
    cache = VerificationCache(memcache, SECRET + b"fallback", local_ttl=1, clock=clock)
    cache.add("alice", 1, "pw")
    clock.now += 5
    assert cache.contains("alice", 1, "pw")


def test_memcached_entry_in_use_is_renewed(shared_memcached: Memcached) -> None:
    clock = FakeClock()
    secret = SECRET + b"renewed"
    memcache = SafeMemcache(shared_memcached.address)
    VerificationCache(memcache, secret, ttl=60).add("alice", 1, "pw")
    recording = Recording(PooledClient(shared_memcached.address))
    worker = VerificationCache(SafeMemcache(lambda: recording), secret, ttl=900, local_ttl=30, clock=clock)
    assert worker.contains("alice", 1, "pw")
    (key,) = {args[0] for args in recording.seen}
    assert 800 < shared_memcached.ttl(key) <= 900
    clock.now += 29
    assert worker.contains("alice", 1, "pw")  # answered locally: no second round trip
    assert len(recording.seen) == 2
    assert not worker.contains("alice", 1, "other")
    assert shared_memcached.ttl(worker._key("alice", 1, "other") or "") == -2  # a miss creates nothing


def test_local_size_is_bounded() -> None:
    cache = VerificationCache(None, SECRET, local_size=2)
    cache.add("a", 1, "pw")
    cache.add("b", 1, "pw")
    assert cache.contains("a", 1, "pw")  # "a" is now the most recently used
    cache.add("c", 1, "pw")
    assert cache.contains("a", 1, "pw")
    assert not cache.contains("b", 1, "pw")
    assert cache.contains("c", 1, "pw")


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        VerificationCache(None, b"short")


def test_usernames_with_nul_are_never_cached() -> None:
    cache = VerificationCache(None, SECRET)
    cache.add("a\0", 1, "pw")
    assert not cache.contains("a\0", 1, "pw")
    with cache.turn("a\0", 1, "pw"):
        assert repr(cache._flights) == "<SingleFlight keys=0>"  # never cached: no turn to wait for


def test_no_secret_in_keys_values_or_repr(shared_memcached: Memcached) -> None:
    recording = Recording(PooledClient(shared_memcached.address))
    cache = VerificationCache(SafeMemcache(lambda: recording), SECRET)
    cache.add("alice", 1, "hunter2-password")
    assert cache.contains("alice", 1, "hunter2-password")
    assert recording.seen
    for args in recording.seen:
        text = repr(args)
        assert "hunter2" not in text and "alice" not in text and "test-secret" not in text
    assert "hunter2" not in repr(cache) and "secret" not in repr(cache)


def test_memcached_dying_is_only_a_miss(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    clock = FakeClock()
    cache = VerificationCache(SafeMemcache(server.address), SECRET, local_ttl=1, clock=clock)
    cache.add("alice", 1, "pw")
    server.kill()
    assert cache.contains("alice", 1, "pw")  # still in the local LRU
    clock.now += 2
    assert not cache.contains("alice", 1, "pw")
    cache.add("alice", 1, "pw")
    assert cache.contains("alice", 1, "pw")
