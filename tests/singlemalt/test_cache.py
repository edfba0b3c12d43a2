"""VerificationCache: keys bind the stored record and the password; local LRU; sealed values in memcached."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import PooledClient

from singlemalt.cache import VerificationCache
from singlemalt.memcache import SafeMemcache
from singlemalt.store import UserRecord

from .conftest import Memcached

SECRET = b"0123456789abcdef-test-secret"


def user(name: str = "alice", version: int = 1, stored: str = "$argon2id$stored-hash-1") -> UserRecord:
    return UserRecord(name, stored, version)


ALICE = user()


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
    assert not cache.contains(ALICE, "pw")
    cache.add(ALICE, "pw")
    assert cache.contains(ALICE, "pw")
    assert not cache.contains(user("alice", 2), "pw")
    assert not cache.contains(ALICE, "pw2")
    assert not cache.contains(user("bob"), "pw")


def test_shared_between_workers_through_memcached(memcache: SafeMemcache) -> None:
    secret = SECRET + b"shared"
    VerificationCache(memcache, secret).add(user("alice", 7), "pw")
    other_worker = VerificationCache(memcache, secret)
    assert other_worker.contains(user("alice", 7), "pw")
    assert not other_worker.contains(user("alice", 8), "pw")
    assert not VerificationCache(memcache, secret + b"x").contains(user("alice", 7), "pw")


def test_local_entries_expire() -> None:
    clock = FakeClock()
    cache = VerificationCache(None, SECRET, local_ttl=30, clock=clock)
    cache.add(ALICE, "pw")
    clock.now += 29
    assert cache.contains(ALICE, "pw")
    clock.now += 2
    assert not cache.contains(ALICE, "pw")


def test_expired_local_entry_falls_back_to_memcached(memcache: SafeMemcache) -> None:
    clock = FakeClock()
    cache = VerificationCache(memcache, SECRET + b"fallback", local_ttl=1, clock=clock)
    cache.add(ALICE, "pw")
    clock.now += 5
    assert cache.contains(ALICE, "pw")


def test_memcached_entry_in_use_is_renewed(shared_memcached: Memcached) -> None:
    clock = FakeClock()
    secret = SECRET + b"renewed"
    memcache = SafeMemcache(shared_memcached.address)
    VerificationCache(memcache, secret, ttl=60).add(ALICE, "pw")
    recording = Recording(PooledClient(shared_memcached.address))
    worker = VerificationCache(SafeMemcache(lambda: recording), secret, ttl=900, local_ttl=30, clock=clock)
    assert worker.contains(ALICE, "pw")
    (key,) = {args[0] for args in recording.seen}
    assert 800 < shared_memcached.ttl(key) <= 900
    clock.now += 29
    assert worker.contains(ALICE, "pw")  # answered locally: no second round trip
    assert len(recording.seen) == 2
    assert not worker.contains(ALICE, "other")
    assert shared_memcached.ttl(worker._key(ALICE, "other") or "") == -2  # a miss creates nothing


def test_local_size_is_bounded() -> None:
    cache = VerificationCache(None, SECRET, local_size=2)
    cache.add(user("a"), "pw")
    cache.add(user("b"), "pw")
    assert cache.contains(user("a"), "pw")  # "a" is now the most recently used
    cache.add(user("c"), "pw")
    assert cache.contains(user("a"), "pw")
    assert not cache.contains(user("b"), "pw")
    assert cache.contains(user("c"), "pw")


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        VerificationCache(None, b"short")


def test_users_without_a_password_hash_are_never_cached() -> None:
    cache = VerificationCache(None, SECRET)
    tokens_only = UserRecord("a", None, 1)
    cache.add(tokens_only, "pw")
    assert not cache.contains(tokens_only, "pw")
    with cache.turn(tokens_only, "pw"):
        assert repr(cache._flights) == "<SingleFlight keys=0>"  # never cached: no turn to wait for


def test_fields_cannot_be_shifted_into_one_another() -> None:
    """Fields are length-prefixed: a NUL (or any character) in one never makes another record's key."""
    cache = VerificationCache(None, SECRET)
    cache.add(user("a\0" + "1"), "pw")
    assert cache.contains(user("a\0" + "1"), "pw")
    assert not cache.contains(user("a", 1), "pw")
    assert cache._key(user("a\0b"), "c") != cache._key(user("a"), "b\0c")


def test_a_re_created_user_never_matches_the_deleted_ones_entries(memcached_factory: Callable[..., Memcached]) -> None:
    """Same name, same version (it starts again at 1), new stored hash: a miss everywhere.

    On the old code (keyed by username, version and password only) every
    assertion below failed: the old password was accepted from the LRU and
    from memcached.
    """
    server = memcached_factory()
    worker = VerificationCache(SafeMemcache(server.address), SECRET)
    old = user(stored="$argon2id$v=19$m=8,t=1,p=1$OLDSALT$old")
    worker.add(old, "old-password")
    recreated = user(stored="$argon2id$v=19$m=8,t=1,p=1$NEWSALT$new")
    assert not worker.contains(recreated, "old-password")  # this worker's LRU
    other = VerificationCache(SafeMemcache(server.address), SECRET)
    assert not other.contains(recreated, "old-password")  # memcached
    server.kill()
    restarted = memcached_factory(server.port)
    assert not worker.contains(recreated, "old-password")  # memcached restarted
    assert not VerificationCache(SafeMemcache(restarted.address), SECRET).contains(recreated, "old-password")
    assert worker.contains(old, "old-password")  # the old record itself still matches (it is gone from the store)


def test_forged_or_corrupted_values_are_ignored_and_logged(
    memcached_factory: Callable[..., Memcached], caplog: pytest.LogCaptureFixture
) -> None:
    server = memcached_factory()
    memcache = SafeMemcache(server.address)
    VerificationCache(memcache, SECRET).add(ALICE, "pw")
    [key] = server.keys()
    genuine = memcache.get(key)
    assert genuine is not None
    worker = VerificationCache(memcache, SECRET)
    flipped = genuine[:-1] + (b"1" if genuine.endswith(b"0") else b"0")
    for forged in (b"1", flipped, genuine.replace(b"s1.", b"s1.9"), b"\xff" * 40):
        memcache.set(key, forged, expire=0)
        with caplog.at_level(logging.WARNING, logger="singlemalt.sealed"):
            assert not worker.contains(ALICE, "pw")
    assert "forged or corrupted memcached value(s) under sm:v:" in caplog.text
    assert len([r for r in caplog.records if r.name == "singlemalt.sealed"]) == 1  # rate-limited
    # A genuine value moved to another key (another user's) does not open there.
    bob_key = VerificationCache(None, SECRET)._key(user("bob"), "pw") or ""
    memcache.set(bob_key, genuine, expire=0)
    assert not VerificationCache(memcache, SECRET).contains(user("bob"), "pw")


def test_an_entry_kept_alive_by_someone_else_expires_anyway(memcached_factory: Callable[..., Memcached]) -> None:
    """The expiry is inside the sealed value: a ``touch`` or re-set by a stranger does not extend it."""
    server = memcached_factory()
    memcache = SafeMemcache(server.address)
    wall = FakeClock()
    VerificationCache(memcache, SECRET, ttl=60, wall_clock=wall).add(ALICE, "pw")
    for key in server.keys():
        memcache.set(key, memcache.get(key) or b"", expire=0)  # kept forever
    wall.now += 59
    assert VerificationCache(memcache, SECRET, wall_clock=wall).contains(ALICE, "pw")  # renewed by re-sealing
    wall.now += 61 + 300
    assert not VerificationCache(memcache, SECRET, wall_clock=wall).contains(ALICE, "pw")


def test_no_secret_in_keys_values_or_repr(shared_memcached: Memcached) -> None:
    recording = Recording(PooledClient(shared_memcached.address))
    cache = VerificationCache(SafeMemcache(lambda: recording), SECRET)
    cache.add(ALICE, "hunter2-password")
    assert cache.contains(ALICE, "hunter2-password")
    assert recording.seen
    for args in recording.seen:
        text = repr(args)
        assert "hunter2" not in text and "alice" not in text and "test-secret" not in text
    assert "hunter2" not in repr(cache) and "secret" not in repr(cache)


def test_memcached_dying_is_only_a_miss(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    clock = FakeClock()
    cache = VerificationCache(SafeMemcache(server.address), SECRET, local_ttl=1, clock=clock)
    cache.add(ALICE, "pw")
    server.kill()
    assert cache.contains(ALICE, "pw")  # still in the local LRU
    clock.now += 2
    assert not cache.contains(ALICE, "pw")
    cache.add(ALICE, "pw")
    assert cache.contains(ALICE, "pw")
