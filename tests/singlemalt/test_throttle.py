"""LoginThrottle against a real memcached: counting, lockout, and failing open."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from singlemalt.credentials import BasicCredentials, BearerCredentials
from singlemalt.memcache import SafeMemcache
from singlemalt.throttle import LoginThrottle, _RecentPasses

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


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ALICE = BasicCredentials("alice", "correct horse")
GUESS = BasicCredentials("alice", "hunter2")


def _remembering(memcache: SafeMemcache) -> tuple[LoginThrottle, LoginThrottle, Clock, str]:
    """A worker's throttle that let alice in a moment ago, another worker's, a clock and alice's address."""
    clock = Clock()
    here = LoginThrottle(memcache, limit=2, clock=clock)
    elsewhere = LoginThrottle(memcache, limit=2)
    address = unique("10.0.2")
    assert not here.blocked(address, "alice", ALICE)
    here.passed(address, ALICE)
    for _ in range(2):  # another worker locks alice out from this address
        elsewhere.record_failure(address, "alice")
    return here, elsewhere, clock, address


def test_a_login_that_passed_skips_the_lock_read_for_recheck_seconds(memcache: SafeMemcache) -> None:
    here, elsewhere, clock, address = _remembering(memcache)
    assert elsewhere.blocked(address, "alice", ALICE)
    # The same password from the same address, moments later: not read.
    clock.now += 1.9
    assert not here.blocked(address, "alice", ALICE)
    # Any other password (a guess), or the same one from elsewhere, is read.
    assert here.blocked(address, "alice", GUESS)
    assert not here.blocked(unique("10.0.3"), "alice", ALICE)
    assert "correct horse" not in repr(here) and "remembered=" in repr(here)


def test_a_pass_is_never_extended_by_a_pass_from_memory(memcache: SafeMemcache) -> None:
    here, _elsewhere, clock, address = _remembering(memcache)
    clock.now += 1.5
    assert not here.blocked(address, "alice", ALICE)  # from memory
    here.passed(address, ALICE)  # the request verified: still counts from the first read
    clock.now += 0.6
    assert here.blocked(address, "alice", ALICE)


def test_a_failure_or_a_lock_seen_for_the_address_forgets_its_passes(memcache: SafeMemcache) -> None:
    here, _elsewhere, _clock, address = _remembering(memcache)
    here.record_failure(address, "bob")  # any failure from that address on this worker
    assert here.blocked(address, "alice", ALICE)

    here, _elsewhere, _clock, address = _remembering(memcache)
    assert here.blocked(address, "alice", GUESS)  # the guess reads the lock...
    assert here.blocked(address, "alice", ALICE)  # ...and the remembered pass is gone


def test_a_failure_between_the_read_and_the_verification_cancels_the_pass(memcache: SafeMemcache) -> None:
    clock = Clock()
    throttle = LoginThrottle(memcache, limit=1, clock=clock)
    address = unique("10.0.4")
    assert not throttle.blocked(address, "alice", ALICE)
    throttle.record_failure(address, "alice")  # a concurrent guess failed and locked the pair
    throttle.passed(address, ALICE)
    assert throttle.blocked(address, "alice", ALICE)


def test_bearer_tokens_are_remembered_and_recheck_zero_always_reads(memcache: SafeMemcache) -> None:
    token = BearerCredentials("sm_abc.def")
    for recheck, remembered in ((2.0, True), (0.0, False)):
        here = LoginThrottle(memcache, limit=1, address_limit=1, recheck=recheck)
        address = unique("10.0.5")
        assert not here.blocked(address, None, token)
        here.passed(address, token)
        LoginThrottle(memcache, limit=1, address_limit=1).record_failure(address, None)
        assert here.blocked(address, None, token) is not remembered


def test_passes_are_bounded_per_worker() -> None:
    passes = _RecentPasses(2.0, Clock(), size=2)
    proofs = [passes.proof(f"10.0.6.{n}", ALICE) for n in range(3)]
    for number, proof in enumerate(proofs):
        assert proof is not None
        passes.checked(proof, f"10.0.6.{number}")
        passes.confirm(proof)
    assert [passes.recent(p) for p in proofs if p is not None] == [False, True, True]
