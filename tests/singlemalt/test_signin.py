"""check_credentials: the throttle, the check budget and the verifier, shared by the middleware and sign-in forms."""

from __future__ import annotations

import uuid

import pytest
import webtest

from singlemalt import (
    BasicCredentials,
    BearerCredentials,
    Identity,
    LoginThrottle,
    PasswordHasher,
    SafeMemcache,
    Scope,
    SignInFailure,
    SignInRefused,
    SingleMalt,
    Verifier,
    check_credentials,
)
from singlemalt.checkbudget import CheckBudget
from singlemalt.signin import BUSY_REASON
from tests.singlemalt.test_middleware import SECRET, DummyApp, DummyStore, basic, dummy_authorize, dummy_classify
from tests.singlemalt.test_unavailable import REASON, FlakyStore


def address() -> str:
    """An address of this test alone: the shared memcached keeps other tests' counts."""
    number = uuid.uuid4().int
    return f"198.51.{number % 250}.{number // 250 % 250 + 1}"


@pytest.fixture
def store(hasher: PasswordHasher) -> DummyStore:
    return DummyStore(hasher)


@pytest.fixture
def verifier(store: DummyStore, hasher: PasswordHasher) -> Verifier:
    return Verifier(store, hasher=hasher)


@pytest.fixture
def throttle(memcache: SafeMemcache) -> LoginThrottle:
    return LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=10, lockout=120)


def test_a_password_proves_an_identity_and_becomes_known_from_the_address(
        verifier: Verifier, throttle: LoginThrottle) -> None:
    client = address()
    good = BasicCredentials("alice", "alice-pw")
    assert check_credentials(verifier, good, address=client, throttle=throttle) == Identity(
        "alice", "password", Scope.WRITE)
    for _ in range(10):  # the address alone is now locked for everyone but known credentials
        throttle.record_failure(client, None)
    assert throttle.admit(client, "alice", good).locked is False
    assert throttle.admit(client, "bob", BasicCredentials("bob", "bob-pw")).locked is True


def test_wrong_credentials_are_counted_until_the_account_is_locked_from_that_address(
        verifier: Verifier, throttle: LoginThrottle) -> None:
    client = address()
    for _ in range(3):
        assert check_credentials(verifier, BasicCredentials("Alice", "nope"), address=client,
                                 throttle=throttle) == SignInRefused(SignInFailure.INVALID, "invalid credentials")
    slow = verifier.slow_verifications
    locked = check_credentials(verifier, BasicCredentials("alice", "alice-pw"), address=client, throttle=throttle)
    assert locked == SignInRefused(SignInFailure.LOCKED, "too many failed logins", 120)
    assert verifier.slow_verifications == slow  # refused without a check
    # Another address, or another account, is not locked.
    assert isinstance(check_credentials(verifier, BasicCredentials("alice", "alice-pw"), address=address(),
                                        throttle=throttle), Identity)
    assert isinstance(check_credentials(verifier, BasicCredentials("bob", "bob-pw"), address=client,
                                        throttle=throttle), Identity)


def test_a_bearer_token_counts_against_the_address_alone(
        verifier: Verifier, store: DummyStore, throttle: LoginThrottle) -> None:
    client = address()
    issued = store.issue("bob", Scope.READ)
    assert check_credentials(verifier, BearerCredentials(issued.token), address=client, throttle=throttle) == \
        Identity("bob", "token", Scope.READ, issued.token_id)
    for _ in range(10):
        refused = check_credentials(verifier, BearerCredentials("smt_" + "x" * 12 + "_" + "y" * 43),
                                    address=client, throttle=throttle)
        assert isinstance(refused, SignInRefused) and refused.failure is SignInFailure.INVALID
    assert throttle.admit(client, None).locked


def test_past_the_check_budget_a_suspect_address_is_busy_without_hashing(
        verifier: Verifier, memcache: SafeMemcache) -> None:
    client = address()
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=50, suspect_after=2,
                             checks=CheckBudget(rate=1e-9, burst=1, address_rate=1e-9, address_burst=1))
    for guess in range(3):
        check_credentials(verifier, BasicCredentials(f"nobody{guess}", "guess"), address=client, throttle=throttle)
    slow = verifier.slow_verifications
    busy = check_credentials(verifier, BasicCredentials("bob", "bob-pw"), address=client, throttle=throttle)
    assert busy == SignInRefused(SignInFailure.BUSY, BUSY_REASON, 2)
    assert verifier.slow_verifications == slow


def test_a_store_that_cannot_answer_is_unavailable_and_no_failure(
        hasher: PasswordHasher, throttle: LoginThrottle) -> None:
    client = address()
    store = FlakyStore(hasher)
    store.down = True
    verifier = Verifier(store, hasher=hasher)
    for _ in range(5):
        assert check_credentials(verifier, BasicCredentials("alice", "nope"), address=client,
                                 throttle=throttle) == SignInRefused(SignInFailure.UNAVAILABLE, REASON, 7)
    assert not throttle.admit(client, "alice").locked


def test_without_a_throttle(verifier: Verifier) -> None:
    assert isinstance(check_credentials(verifier, BasicCredentials("alice", "alice-pw"), address="x"), Identity)
    for _ in range(20):
        assert check_credentials(verifier, BasicCredentials("alice", "no"), address="x") == SignInRefused(
            SignInFailure.INVALID, "invalid credentials")


def test_a_trusted_remote_user_front_still_locks_the_account_a_basic_login_names(
        hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    """With ``trust_remote_user`` (the web pool: sessions set REMOTE_USER) a Basic login's failures
    count against its account too. Before check_credentials the middleware counted them under the
    (absent) REMOTE_USER, so only the address limit, ten times higher, ever locked a guesser."""
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=30)
    app = SingleMalt(DummyApp(), classify=dummy_classify, verifier=Verifier(DummyStore(hasher), hasher=hasher),
                     authorize=dummy_authorize, realm="test", throttle=throttle, trust_remote_user=True)
    client = webtest.TestApp(app, lint=True, extra_environ={"REMOTE_ADDR": address()})
    for _ in range(3):
        client.get("/alice/x", headers=basic("alice", "nope"), status=401)
    client.get("/alice/x", headers=basic("alice", "alice-pw"), status=429)
    client.get("/alice/shared", headers=basic("bob", "bob-pw"), status=200)
