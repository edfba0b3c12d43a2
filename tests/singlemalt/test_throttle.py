"""LoginThrottle against a real memcached: counting, lockout, and failing open."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import PooledClient

from singlemalt.credentials import BasicCredentials, BearerCredentials
from singlemalt.memcache import SafeMemcache
from singlemalt.throttle import LoginThrottle, _KnownCredentials, _RecentPasses, canonical_name

from .conftest import Memcached

SECRET = b"throttle-test-secret-0123456789"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_counts_per_address_and_username_pair(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3)
    address, user = unique("10.0.0"), unique("alice")
    for _ in range(2):
        throttle.record_failure(address, user)
    assert not throttle.blocked(address, user)
    throttle.record_failure(address, user)
    assert throttle.blocked(address, user)
    assert not throttle.blocked(address, unique("bob"))  # other accounts from there still work
    assert not throttle.blocked(unique("elsewhere"), user)  # nobody can lock alice out everywhere


def test_counts_per_address_across_usernames(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=4)
    address = unique("10.0.1")
    for _ in range(4):
        throttle.record_failure(address, unique("user"))
    assert throttle.blocked(address, None)
    assert throttle.blocked(address, unique("anyone"))
    assert not throttle.blocked(unique("elsewhere"), None)


def test_address_limit_defaults_to_ten_times_limit(memcache: SafeMemcache) -> None:
    assert LoginThrottle(memcache, secret=SECRET, limit=7).address_limit == 70


def test_bearer_failures_count_only_the_address(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, secret=SECRET, limit=2, address_limit=2)
    address = unique("addr")
    throttle.record_failure(address, None)
    throttle.record_failure(address, None)
    assert throttle.blocked(address, unique("anyone"))


def test_lockout_and_window_expire(memcached_factory: Callable[..., Memcached]) -> None:
    throttle = LoginThrottle(SafeMemcache(memcached_factory().address), secret=SECRET,
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

        def touch(self, key: str, expire: int = 0, noreply: bool | None = None) -> bool:
            return False

    throttle = LoginThrottle(SafeMemcache(lambda: Client()), secret=SECRET, limit=1)
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
    throttle = LoginThrottle(SafeMemcache(lambda: racy), secret=SECRET, limit=5, address_limit=5)  # type: ignore[arg-type,return-value]
    throttle.record_failure("a", "u")
    assert len(racy.locked) == 2


def test_fails_open_without_memcached(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    throttle = LoginThrottle(SafeMemcache(server.address), secret=SECRET, limit=1)
    throttle.record_failure("a", "u")
    assert throttle.blocked("a", "u")
    server.kill()
    assert not throttle.blocked("a", "u")
    throttle.record_failure("a", "u")
    assert not throttle.blocked("a", "u")
    unconfigured = LoginThrottle(SafeMemcache(None), secret=SECRET, limit=1)
    unconfigured.record_failure("a", "u")
    assert not unconfigured.blocked("a", "u")


@pytest.mark.parametrize("options", [{"limit": 0}, {"address_limit": 0}, {"window": 0}, {"lockout": -1}])
def test_bad_configuration(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(SafeMemcache(None), secret=SECRET, **options)


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
    here = LoginThrottle(memcache, secret=SECRET, limit=2, clock=clock)
    elsewhere = LoginThrottle(memcache, secret=SECRET, limit=2)
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
    throttle = LoginThrottle(memcache, secret=SECRET, limit=1, clock=clock)
    address = unique("10.0.4")
    assert not throttle.blocked(address, "alice", ALICE)
    throttle.record_failure(address, "alice")  # a concurrent guess failed and locked the pair
    throttle.passed(address, ALICE)
    assert throttle.blocked(address, "alice", ALICE)


def test_recheck_zero_always_reads(memcache: SafeMemcache) -> None:
    for recheck, remembered in ((2.0, True), (0.0, False)):
        here = LoginThrottle(memcache, secret=SECRET, limit=1, recheck=recheck)
        address = unique("10.0.5")
        assert not here.blocked(address, "alice", ALICE)
        here.passed(address, ALICE)
        LoginThrottle(memcache, secret=SECRET, limit=1).record_failure(address, "alice")
        assert here.blocked(address, "alice", ALICE) is not remembered


def test_passes_are_bounded_per_worker() -> None:
    passes = _RecentPasses(2.0, Clock(), size=2)
    proofs = [passes.proof(f"10.0.6.{n}", ALICE) for n in range(3)]
    for number, proof in enumerate(proofs):
        assert proof is not None
        passes.checked(proof, f"10.0.6.{number}")
        passes.confirm(proof)
    assert [passes.recent(p) for p in proofs if p is not None] == [False, True, True]


# -- canonical account names ------------------------------------------------------


def test_failures_as_alice_lock_every_spelling_of_alice(memcache: SafeMemcache) -> None:
    """On the old code (raw usernames in the keys) ``ALICE`` was not locked."""
    throttle = LoginThrottle(memcache, secret=SECRET, limit=10)
    address = unique("10.1.0")
    for _ in range(10):
        throttle.record_failure(address, "alice")
    for spelling in ("alice", "ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"):  # the last: fullwidth
        assert throttle.blocked(address, spelling), spelling
    assert not throttle.blocked(address, "bob")


@pytest.mark.parametrize(("name", "canonical"), [
    ("Alice", "alice"), ("STRASSE", "strasse"), ("Stra\u00dfe", "strasse"),
    ("\u212bngstr\u00f6m", "\u00e5ngstr\u00f6m"), ("\uff21", "a"), ("e\u0301", "\u00e9"),
], ids=["ascii", "upper", "sharp-s", "angstrom-sign", "fullwidth", "combining"])
def test_default_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical
    assert canonical_name(canonical_name(name)) == canonical_name(name)


def test_the_application_decides_what_an_account_name_is(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, secret=SECRET, limit=2, canonical=lambda name: name.split("@")[0].lower())
    address = unique("10.1.1")
    throttle.record_failure(address, "alice@example.com")
    throttle.record_failure(address, "ALICE@example.org")
    assert throttle.blocked(address, "alice")


# -- nothing in memcached can be forged ------------------------------------------


def test_lock_keys_cannot_be_computed_without_the_secret(memcache: SafeMemcache) -> None:
    """On the old code a lock was ``sha256(subject)`` = ``b"1"``: anyone could lock alice out."""
    throttle = LoginThrottle(memcache, secret=SECRET)
    address = unique("10.2.0")
    old_scheme = "sm:t:lock:" + hashlib.sha256(f"user\0{address}\0alice".encode()).hexdigest()
    memcache.set(old_scheme, b"1", expire=300)
    assert not throttle.blocked(address, "alice")
    other_secret = LoginThrottle(memcache, secret=SECRET + b"other", limit=1, address_limit=1)
    other_secret.record_failure(address, "alice")  # what someone with another secret can do
    assert not throttle.blocked(address, "alice")


def test_forged_values_under_listed_keys_are_ignored_and_logged(
    memcached_factory: Callable[..., Memcached], caplog: pytest.LogCaptureFixture
) -> None:
    server = memcached_factory()
    memcache = SafeMemcache(server.address)
    throttle = LoginThrottle(memcache, secret=SECRET, limit=1, address_limit=2)
    address = "192.0.2.10"
    throttle.record_failure(address, "mallory")  # a counter and a lock exist: their keys can be listed
    assert throttle.blocked(address, "mallory")
    listed = server.keys(3)
    genuine_lock = next(value for key in listed if (value := memcache.get(key)) and value.startswith(b"s1."))
    for key in listed:  # the attacker overwrites every key, then adds a copy of the lock value everywhere
        memcache.set(key, b"1", expire=0)
    with caplog.at_level(logging.WARNING, logger="singlemalt.sealed"):
        assert not throttle.blocked(address, "mallory")
        for name in ("alice", "bob"):
            assert not throttle.blocked(address, name)
    assert "forged or corrupted memcached value(s) under sm:t:" in caplog.text
    for key in listed:
        memcache.set(key, genuine_lock, expire=0)
    # The genuine lock opens only under its own key: the address lock key now
    # holds the pair's lock value, and does not open there.
    assert not throttle.blocked(address, "alice")


def test_a_lock_replayed_after_its_expiry_is_ignored(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    memcache = SafeMemcache(server.address)
    wall = Clock()
    throttle = LoginThrottle(memcache, secret=SECRET, limit=1, lockout=60, wall_clock=wall)
    throttle.record_failure("192.0.2.11", "alice")
    captured = {key: memcache.get(key) for key in server.keys(3)}
    wall.now += 61
    for key, value in captured.items():  # written back with no memcached expiry at all
        memcache.set(key, value or b"", expire=0)
    assert not throttle.blocked("192.0.2.11", "alice")


# -- shared addresses ---------------------------------------------------------------

BOB = BasicCredentials("bob", "bob's password")


def _office(memcache: SafeMemcache, **options: Any) -> tuple[LoginThrottle, str]:
    """A worker's throttle (recheck 0: every call reads) and an office address where alice logged in."""
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=5, recheck=0, **options)
    office = unique("198.51.100")
    assert not throttle.blocked(office, "alice", ALICE)
    throttle.passed(office, ALICE)
    return throttle, office


def _attack(throttle: LoginThrottle, address: str, failures: int = 5) -> None:
    for number in range(failures):
        throttle.record_failure(address, f"unknown-{number}")


def test_an_address_lock_stops_unknown_credentials_only(memcache: SafeMemcache) -> None:
    """On the old code the address lock refused alice too."""
    throttle, office = _office(memcache)
    _attack(throttle, office)
    assert not throttle.blocked(office, "alice", ALICE)  # verified from here before: keeps working
    assert not throttle.blocked(office, "ALICE", BasicCredentials("ALICE", ALICE.password))
    assert throttle.blocked(office, "bob", BOB)  # never verified from here: 429
    assert throttle.blocked(office, "alice", GUESS)  # a guess at alice's password is an unknown credential
    assert throttle.blocked(office, None, None)
    assert not throttle.blocked(unique("203.0.113"), "bob", BOB)  # elsewhere nothing changed


def test_a_known_credential_is_still_subject_to_its_own_lock(memcache: SafeMemcache) -> None:
    throttle, office = _office(memcache)
    for _ in range(3):
        throttle.record_failure(office, "alice")
    assert throttle.blocked(office, "alice", ALICE)


def test_known_credentials_are_shared_by_workers_and_kept_by_each(memcached_factory: Callable[..., Memcached]) -> None:
    server = memcached_factory()
    here, office = _office(SafeMemcache(server.address, retry_interval=0))
    elsewhere = LoginThrottle(SafeMemcache(server.address, retry_interval=0), secret=SECRET, limit=3,
                              address_limit=5, recheck=0)
    _attack(elsewhere, office)
    assert not elsewhere.blocked(office, "alice", ALICE)  # learnt through memcached
    server.kill()
    restarted = SafeMemcache(memcached_factory(server.port).address)
    _attack(LoginThrottle(restarted, secret=SECRET, limit=3, address_limit=5), office)  # the attack goes on
    assert not here.blocked(office, "alice", ALICE)  # each worker that saw the mark keeps it
    assert not elsewhere.blocked(office, "alice", ALICE)
    # A worker that never saw it has only memcached, which forgot it in the restart.
    assert LoginThrottle(restarted, secret=SECRET, limit=3, address_limit=5).blocked(office, "alice", ALICE)


def test_a_bearer_token_that_verified_from_the_address_keeps_working(memcache: SafeMemcache) -> None:
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=5, recheck=0)
    office = unique("198.51.101")
    token = BearerCredentials("smt_" + "a" * 12 + "_" + "b" * 43)
    assert not throttle.blocked(office, None, token)
    throttle.passed(office, token)
    _attack(throttle, office)
    assert not throttle.blocked(office, None, token)
    assert throttle.blocked(office, None, BearerCredentials("smt_" + "a" * 12 + "_" + "c" * 43))


def test_the_mark_is_written_about_once_a_day_per_worker(shared_memcached: Memcached) -> None:
    recording = Recording(PooledClient(shared_memcached.address))
    wall = Clock()
    throttle = LoginThrottle(SafeMemcache(lambda: recording), secret=SECRET, recheck=0, wall_clock=wall)
    office = unique("198.51.102")
    for _ in range(50):
        assert not throttle.blocked(office, "alice", ALICE)
        throttle.passed(office, ALICE)
    assert recording.calls.count("set") == 1
    wall.now += 86400 + 1
    assert not throttle.blocked(office, "alice", ALICE)
    throttle.passed(office, ALICE)
    assert recording.calls.count("set") == 2
    assert shared_memcached.ttl(recording.keys["set"][-1]) > 6 * 86400


class Recording:
    """Wraps a real client and records which operations were sent, and their keys."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []
        self.keys: dict[str, list[str]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            self.keys.setdefault(name, []).append(args[0])
            return method(*args, **kwargs)

        return call


def test_known_credentials_are_bounded_per_worker() -> None:
    known = _KnownCredentials(size=2)
    for mark in ("a", "b", "c"):
        known.remember(mark, 100.0)
    assert [known.expires(mark) for mark in ("a", "b", "c")] == [float("-inf"), 100.0, 100.0]


def test_a_mark_another_worker_wrote_is_not_written_again(shared_memcached: Memcached) -> None:
    office = unique("198.51.103")
    first = LoginThrottle(SafeMemcache(shared_memcached.address), secret=SECRET, recheck=0)
    assert not first.blocked(office, "alice", ALICE)
    first.passed(office, ALICE)
    recording = Recording(PooledClient(shared_memcached.address))
    second = LoginThrottle(SafeMemcache(lambda: recording), secret=SECRET, recheck=0)
    assert not second.blocked(office, "alice", ALICE)
    second.passed(office, ALICE)
    assert recording.calls == ["get_many"]
