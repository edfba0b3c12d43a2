"""Verifier: passwords, tokens (Bearer and as Basic password), caching and dummy work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import passlib.hash as schemes
import pytest

from singlemalt.cache import VerificationCache
from singlemalt.credentials import BasicCredentials, BearerCredentials
from singlemalt.identity import Identity, Scope
from singlemalt.memcache import SafeMemcache
from singlemalt.passwords import PasswordHasher
from singlemalt.store import TokenRecord, UserRecord
from singlemalt.tokens import IssuedToken, new_token
from singlemalt.verify import Verifier
from tests.polling import wait_until

from .conftest import Memcached

NOW = 1_700_000_000.0


class DummyStore:
    def __init__(self) -> None:
        self.users: dict[str, UserRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}

    def user(self, username: str) -> UserRecord | None:
        return self.users.get(username)

    def token(self, token_id: str) -> TokenRecord | None:
        return self.tokens.get(token_id)


class RecordingHasher(PasswordHasher):
    """The cheap hasher, remembering which stored hashes it was asked to verify against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.against: list[str] = []

    def verify(self, password: str, password_hash: str) -> bool:
        self.against.append(password_hash)
        return super().verify(password, password_hash)


class GatedHasher(PasswordHasher):
    """The cheap hasher, holding every verification until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()

    def verify(self, password: str, password_hash: str) -> bool:
        self.entered.release()
        assert self.gate.wait(10)
        return super().verify(password, password_hash)


@pytest.fixture
def store(hasher: PasswordHasher) -> DummyStore:
    store = DummyStore()
    store.users["alice"] = UserRecord("alice", hasher.hash("alice-pw"), 1)
    store.users["tokenonly"] = UserRecord("tokenonly", None, 1)
    store.users["legacy"] = UserRecord("legacy", "plaintext-pw", 1)
    return store


def add_token(store: DummyStore, username: str = "alice", *, scope: Scope = Scope.READ,
              expires_at: float | None = None, revoked: bool = False) -> IssuedToken:
    issued = new_token()
    store.tokens[issued.token_id] = TokenRecord(
        issued.token_id, username, issued.secret_hash, scope, expires_at, revoked)
    return issued


@pytest.fixture
def verifier(store: DummyStore, hasher: PasswordHasher) -> Verifier:
    return Verifier(store, hasher=hasher, clock=lambda: NOW)


def test_password(verifier: Verifier) -> None:
    assert verifier.verify(BasicCredentials("alice", "alice-pw")) == Identity(
        "alice", "password", Scope.WRITE)
    assert verifier.verify(BasicCredentials("alice", "wrong")) is None
    assert verifier.slow_verifications == 2


@pytest.mark.parametrize("username", ["nobody", "tokenonly"])
def test_unknown_or_passwordless_user_costs_one_slow_verification(
    verifier: Verifier, username: str
) -> None:
    assert verifier.verify(BasicCredentials(username, "pw")) is None
    assert verifier.slow_verifications == 1


def test_unsupported_hash(verifier: Verifier, caplog: pytest.LogCaptureFixture) -> None:
    assert verifier.verify(BasicCredentials("legacy", "plaintext-pw")) is None
    assert verifier.slow_verifications == 1
    assert "'legacy' has a password hash of an unsupported scheme" in caplog.text
    assert "plaintext-pw" not in caplog.text


def test_each_slow_verification_is_logged_without_the_password(
    store: DummyStore, hasher: PasswordHasher, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers are separate processes: the log line is how a benchmark counts them."""
    caplog.set_level(logging.INFO, logger="singlemalt.verify")
    verifier = Verifier(store, cache=VerificationCache(None, b"x" * 32), hasher=hasher)
    for _ in range(3):
        assert verifier.verify(BasicCredentials("alice", "alice-pw")) is not None
    assert verifier.verify(BasicCredentials("nobody", "nobody-pw")) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "singlemalt.verify"]
    assert lines == ["slow password verification user='alice'",
                     "slow password verification user='nobody'"]
    assert verifier.slow_verifications == 2
    assert "alice-pw" not in caplog.text and "nobody-pw" not in caplog.text


def test_unknown_users_cost_what_known_users_cost(store: DummyStore) -> None:
    hasher = RecordingHasher()
    verifier = Verifier(store, hasher=hasher)
    assert verifier.verify(BasicCredentials("nobody", "pw")) is None
    assert hasher.against[-1] == hasher.dummy_hash
    bcrypt_hash = schemes.bcrypt.using(rounds=4).hash("bob-pw")
    store.users["bob"] = UserRecord("bob", bcrypt_hash, 1)
    assert verifier.verify(BasicCredentials("bob", "bob-pw")) is not None
    assert verifier.verify(BasicCredentials("nobody", "pw")) is None
    assert hasher.against[-1] == bcrypt_hash  # same scheme and cost as the real users


def test_cache_skips_the_slow_verification(store: DummyStore, hasher: PasswordHasher) -> None:
    cache = VerificationCache(None, b"x" * 32)
    verifier = Verifier(store, cache=cache, hasher=hasher)
    for _ in range(5):
        assert verifier.verify(BasicCredentials("alice", "alice-pw")) is not None
    assert verifier.slow_verifications == 1
    assert verifier.verify(BasicCredentials("alice", "wrong")) is None
    assert verifier.verify(BasicCredentials("alice", "wrong")) is None
    assert verifier.slow_verifications == 3  # failures are never cached


def test_password_change_invalidates_the_cache(store: DummyStore, hasher: PasswordHasher) -> None:
    verifier = Verifier(store, cache=VerificationCache(None, b"x" * 32), hasher=hasher)
    assert verifier.verify(BasicCredentials("alice", "alice-pw")) is not None
    store.users["alice"] = UserRecord("alice", hasher.hash("new-pw"), 2)
    assert verifier.verify(BasicCredentials("alice", "alice-pw")) is None
    assert verifier.verify(BasicCredentials("alice", "new-pw")) is not None
    del store.users["alice"]
    assert verifier.verify(BasicCredentials("alice", "new-pw")) is None


def test_bearer_token(store: DummyStore, verifier: Verifier) -> None:
    issued = add_token(store, scope=Scope.READ)
    assert verifier.verify(BearerCredentials(issued.token)) == Identity(
        "alice", "token", Scope.READ, issued.token_id)
    write = add_token(store, scope=Scope.WRITE)
    assert verifier.verify(BearerCredentials(write.token)) == Identity(
        "alice", "token", Scope.WRITE, write.token_id)
    assert verifier.slow_verifications == 0  # tokens are checked with a fast hash


def test_token_as_basic_password(store: DummyStore, verifier: Verifier) -> None:
    issued = add_token(store)
    identity = verifier.verify(BasicCredentials("alice", issued.token))
    assert identity == Identity("alice", "token", Scope.READ, issued.token_id)
    assert verifier.verify(BasicCredentials("mallory", issued.token)) is None
    assert verifier.slow_verifications == 0


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        pytest.param({"expires_at": NOW + 1}, True, id="not-yet-expired"),
        pytest.param({"expires_at": NOW}, False, id="expired"),
        pytest.param({"revoked": True}, False, id="revoked"),
        pytest.param({"username": "ghost"}, False, id="owner-deleted"),
    ],
)
def test_token_state(store: DummyStore, verifier: Verifier, options: dict[str, object],
                     ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="singlemalt.verify")
    issued = add_token(store, **options)  # type: ignore[arg-type]
    assert (verifier.verify(BearerCredentials(issued.token)) is not None) is ok
    assert issued.token not in caplog.text
    assert issued.token[17:] not in caplog.text


def test_bad_tokens(store: DummyStore, verifier: Verifier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="singlemalt.verify")
    issued = add_token(store)
    wrong_secret = issued.token[:17] + "A" * 43
    unknown_id = "smt_" + "Z" * 12 + issued.token[16:]
    assert verifier.verify(BearerCredentials(wrong_secret)) is None
    assert verifier.verify(BearerCredentials(unknown_id)) is None
    assert verifier.verify(BearerCredentials("not-a-singlemalt-token")) is None
    assert "wrong secret" in caplog.text and "unknown token" in caplog.text
    assert "A" * 43 not in caplog.text


def test_counter_is_thread_safe(store: DummyStore, hasher: PasswordHasher) -> None:
    verifier = Verifier(store, hasher=hasher)

    def work() -> None:
        for _ in range(10):
            verifier.verify(BasicCredentials("nobody", "pw"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verifier.slow_verifications == 40


def test_repr_has_no_secrets(verifier: Verifier) -> None:
    assert "alice-pw" not in repr(verifier)
    assert repr(verifier).startswith("<Verifier store=")


def test_a_burst_of_one_uncached_credential_costs_one_slow_verification(store: DummyStore) -> None:
    """32 clones of a CI fleet starting together: one argon2, not 32 competing for the cores."""
    hasher = GatedHasher()
    cache = VerificationCache(None, b"x" * 32)
    verifier = Verifier(store, cache=cache, hasher=hasher)
    results: list[Identity | None] = []

    def login() -> None:
        results.append(verifier.verify(BasicCredentials("alice", "alice-pw")))

    threads = [threading.Thread(target=login) for _ in range(8)]
    threads[0].start()
    assert hasher.entered.acquire(timeout=10)
    for thread in threads[1:]:
        thread.start()
    key = cache._key(store.users["alice"], "alice-pw")
    wait_until("all eight wait their turn", lambda: cache._flights.pending(key) == 8, 10, interval=0.005)
    assert not hasher.entered.acquire(blocking=False)  # nobody else is hashing
    hasher.gate.set()
    for thread in threads:
        thread.join(10)
    assert results == [Identity("alice", "password", Scope.WRITE)] * 8
    assert verifier.slow_verifications == 1


def test_a_guess_never_waits_for_the_real_users_verification(store: DummyStore) -> None:
    hasher = GatedHasher()
    verifier = Verifier(store, cache=VerificationCache(None, b"x" * 32), hasher=hasher)
    results: list[Identity | None] = []
    real = threading.Thread(target=lambda: results.append(verifier.verify(BasicCredentials("alice", "alice-pw"))))
    guess = threading.Thread(target=lambda: results.append(verifier.verify(BasicCredentials("alice", "guess"))))
    real.start()
    assert hasher.entered.acquire(timeout=10)
    guess.start()
    assert hasher.entered.acquire(timeout=10)  # the guess is hashing while the real login still is
    hasher.gate.set()
    real.join(10)
    guess.join(10)
    assert sorted(results, key=repr) == sorted([None, Identity("alice", "password", Scope.WRITE)], key=repr)
    assert verifier.slow_verifications == 2


def test_a_re_created_user_never_gets_the_old_password_back(
    hasher: PasswordHasher, memcache: SafeMemcache
) -> None:
    """Deleted, then re-created under the same name (its version starts again at 1): the old password is wrong.

    Two workers share memcached and each has its own LRU. On the old code
    (cache key without the stored hash) worker 1 accepted the old password
    from its LRU and worker 2 from memcached.
    """
    store = DummyStore()
    store.users["carol"] = UserRecord("carol", hasher.hash("old-password"), 1)
    secret = b"re-created-user-secret"
    workers = [Verifier(store, cache=VerificationCache(memcache, secret), hasher=hasher) for _ in range(2)]
    for worker in workers:
        assert worker.verify(BasicCredentials("carol", "old-password")) is not None
    assert sum(worker.slow_verifications for worker in workers) == 1  # worker 2 found it in memcached
    del store.users["carol"]
    assert all(worker.verify(BasicCredentials("carol", "old-password")) is None for worker in workers)
    store.users["carol"] = UserRecord("carol", hasher.hash("new-password"), 1)
    fresh = Verifier(store, cache=VerificationCache(memcache, secret), hasher=hasher)
    for worker in [*workers, fresh]:
        assert worker.verify(BasicCredentials("carol", "old-password")) is None
        assert worker.verify(BasicCredentials("carol", "new-password")) is not None


def test_a_re_created_user_with_memcached_down_or_restarted(
    hasher: PasswordHasher, memcached_factory: Callable[..., Memcached]
) -> None:
    server = memcached_factory()
    store = DummyStore()
    store.users["carol"] = UserRecord("carol", hasher.hash("old-password"), 1)
    worker = Verifier(store, cache=VerificationCache(SafeMemcache(server.address, retry_interval=0), b"s" * 32),
                      hasher=hasher)
    assert worker.verify(BasicCredentials("carol", "old-password")) is not None
    server.kill()  # down: only the worker's LRU is left
    store.users["carol"] = UserRecord("carol", hasher.hash("new-password"), 1)
    assert worker.verify(BasicCredentials("carol", "old-password")) is None
    memcached_factory(server.port)  # restarted, empty
    assert worker.verify(BasicCredentials("carol", "old-password")) is None
    assert worker.verify(BasicCredentials("carol", "new-password")) is not None
