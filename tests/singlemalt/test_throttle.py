"""LoginThrottle against a real memcached: counting, lockout, and failing open."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from singlemalt.memcache import SafeMemcache
from singlemalt.throttle import LoginThrottle

from .conftest import Memcached


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_counts_per_address_and_username_pair(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, limit=3)
    address, user = unique("10.0.0"), unique("alice")
    for _ in range(2):
        throttle.record_failure(address, user)
    assert not throttle.blocked(address, user)
    throttle.record_failure(address, user)
    assert throttle.blocked(address, user)
    assert not throttle.blocked(address, unique("bob"))  # other accounts from there still work
    assert not throttle.blocked(unique("elsewhere"), user)  # nobody can lock alice out everywhere


def test_counts_per_address_across_usernames(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, limit=3, address_limit=4)
    address = unique("10.0.1")
    for _ in range(4):
        throttle.record_failure(address, unique("user"))
    assert throttle.blocked(address, None)
    assert throttle.blocked(address, unique("anyone"))
    assert not throttle.blocked(unique("elsewhere"), None)


def test_address_limit_defaults_to_ten_times_limit(memcache: SafeMemcache) -> None:
    assert LoginThrottle(memcache, limit=7).address_limit == 70


def test_bearer_failures_count_only_the_address(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, limit=2, address_limit=2)
    address = unique("addr")
    throttle.record_failure(address, None)
    throttle.record_failure(address, None)
    assert throttle.blocked(address, unique("anyone"))


def test_lockout_and_window_expire(memcached_factory: Callable[..., Memcached]) -> None:
    throttle = LoginThrottle(SafeMemcache(memcached_factory().address),
                             limit=2, window=1, lockout=1)
    throttle.record_failure("a", "u")
    throttle.record_failure("a", "u")
    assert throttle.blocked("a", "u")
    time.sleep(2.1)
    assert not throttle.blocked("a", "u")
    throttle.record_failure("a", "u")  # a new window: one failure is not enough
    assert not throttle.blocked("a", "u")


def test_keys_are_hashed() -> None:
    seen: list[str] = []

    class Client:
        def get(self, key: str) -> None:
            seen.append(key)

        def get_many(self, keys: list[str]) -> dict[str, bytes]:
            seen.extend(keys)
            return {}

        def incr(self, key: str, value: int, noreply: bool = False) -> None:
            seen.append(key)

        def add(self, key: str, *args: Any, **kwargs: Any) -> bool:
            seen.append(key)
            return True

        def set(self, key: str, *args: Any, **kwargs: Any) -> bool:
            seen.append(key)
            return True

        def delete(self, key: str, noreply: bool | None = None) -> bool:
            return False

    throttle = LoginThrottle(SafeMemcache(lambda: Client()), limit=1)
    throttle.record_failure("192.0.2.1", "alice")
    throttle.blocked("192.0.2.1", "alice")
    assert seen and all(k.startswith("sm:t:") for k in seen)
    assert not any("alice" in k or "192.0.2.1" in k for k in seen)


def test_concurrent_first_failure() -> None:
    """Another worker creates the counter between our incr and add."""

    class Racy:
        def __init__(self) -> None:
            self.incrs = 0
            self.locked: list[str] = []

        def incr(self, key: str, value: int, noreply: bool = False) -> int | None:
            self.incrs += 1
            return None if self.incrs % 2 else 5

        def add(self, *args: Any, **kwargs: Any) -> bool:
            return False

        def set(self, key: str, *args: Any, **kwargs: Any) -> bool:
            self.locked.append(key)
            return True

    racy = Racy()
    LoginThrottle(SafeMemcache(lambda: racy), limit=5, address_limit=5).record_failure("a", "u")  # type: ignore[arg-type,return-value]
    assert len(racy.locked) == 2


def test_fails_open_without_memcached(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    throttle = LoginThrottle(SafeMemcache(server.address), limit=1)
    throttle.record_failure("a", "u")
    assert throttle.blocked("a", "u")
    server.kill()
    assert not throttle.blocked("a", "u")
    throttle.record_failure("a", "u")
    assert not throttle.blocked("a", "u")
    unconfigured = LoginThrottle(SafeMemcache(None), limit=1)
    unconfigured.record_failure("a", "u")
    assert not unconfigured.blocked("a", "u")


@pytest.mark.parametrize("options", [{"limit": 0}, {"address_limit": 0}, {"window": 0}, {"lockout": -1}])
def test_bad_configuration(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(SafeMemcache(None), **options)
