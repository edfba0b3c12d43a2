"""``Unavailable``: a store or an authorizer that cannot decide now gets a 503, never a 500 or a lockout."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import webtest

from singlemalt import (
    Decision,
    Identity,
    LoginThrottle,
    PasswordHasher,
    SafeMemcache,
    Scope,
    SingleMalt,
    Target,
    TokenRecord,
    Unavailable,
    UserRecord,
    Verifier,
)
from singlemalt.challenge import unavailable
from tests.singlemalt.test_middleware import SECRET, DummyApp, DummyStore, basic, dummy_authorize, dummy_classify

REASON = "the account database is down; try again shortly"


class FlakyStore(DummyStore):
    """A credential store whose database is down while ``down`` is set."""

    down = False

    def user(self, username: str) -> UserRecord | None:
        if self.down:
            raise Unavailable(REASON, retry_after=7)
        return super().user(username)

    def token(self, token_id: str) -> TokenRecord | None:
        if self.down:
            raise Unavailable(REASON)
        return super().token(token_id)


class FlakyAuthorizer:
    """An authorizer that cannot decide writes while ``down`` is set."""

    down = False

    def __call__(self, identity: Identity | None, target: Target) -> Decision:
        if self.down and target.action.value == "write":
            raise Unavailable("pushes are not accepted now; nothing changed")
        return dummy_authorize(identity, target)


class Flaky:
    def __init__(self, hasher: PasswordHasher, memcache: SafeMemcache, **options: Any) -> None:
        self.store = FlakyStore(hasher)
        self.authorize = FlakyAuthorizer()
        self.throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=3)
        self.app = DummyApp()
        self.middleware = SingleMalt(self.app, classify=dummy_classify, verifier=Verifier(self.store, hasher=hasher),
                                     authorize=self.authorize, realm="test", throttle=self.throttle, **options)
        self.client = webtest.TestApp(self.middleware, lint=True, extra_environ={"REMOTE_ADDR": "192.0.2.7"})


@pytest.fixture
def flaky(hasher: PasswordHasher, memcache: SafeMemcache) -> Flaky:
    return Flaky(hasher, memcache)


def test_a_store_that_cannot_answer_gets_503_with_retry_after_and_the_reason(flaky: Flaky) -> None:
    flaky.store.down = True
    response = flaky.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=503)
    assert response.headers["Retry-After"] == "7"
    assert response.text == REASON + "\n"
    assert response.status == "503 " + REASON  # hg shows the reason phrase
    assert not flaky.app.calls


def test_a_token_store_that_cannot_answer_gets_503(flaky: Flaky) -> None:
    issued = flaky.store.issue("alice", Scope.WRITE)
    flaky.store.down = True
    response = flaky.client.get("/alice/x", headers={"Authorization": "Bearer " + issued.token}, status=503)
    assert response.headers["Retry-After"] == "5"


def test_an_outage_is_not_a_failed_login(flaky: Flaky) -> None:
    flaky.store.down = True
    for _ in range(5):  # more than the throttle's limit of 3
        flaky.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=503)
    assert not flaky.throttle.blocked("192.0.2.7", "alice")
    flaky.store.down = False
    flaky.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)


def test_an_authorizer_that_cannot_decide_gets_503_and_reads_go_on(flaky: Flaky) -> None:
    flaky.authorize.down = True
    response = flaky.client.post("/alice/x", params=b"push", headers=basic("alice", "alice-pw"), status=503)
    assert "nothing changed" in response.text
    assert response.headers["Retry-After"] == "5"
    flaky.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    assert len(flaky.app.calls) == 1


def test_a_refused_push_is_drained_up_to_the_write_limit(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = Flaky(hasher, memcache, write_drain_limit=1 << 20)
    world.authorize.down = True
    body = b"x" * (256 * 1024)  # beyond the default 64 KiB drain: read whole, so the connection stays usable
    response = world.client.post("/alice/x", params=body, headers=basic("alice", "alice-pw"), status=503)
    assert "Connection" not in response.headers


def test_it_is_logged_as_unavailable(flaky: Flaky, caplog: pytest.LogCaptureFixture) -> None:
    flaky.store.down = True
    with caplog.at_level(logging.INFO, logger="singlemalt.middleware"):
        flaky.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=503)
    [record] = [r for r in caplog.records if r.name == "singlemalt.middleware"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("unavailable user='alice'")
    assert "alice-pw" not in record.getMessage()


def test_retry_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry_after"):
        Unavailable("x", retry_after=0)
    error = Unavailable("down", retry_after=3)
    assert (str(error), error.reason, error.retry_after) == ("down", "down", 3)


def test_the_response_is_built_in_challenge() -> None:
    response = unavailable("down\r\nX-Injected: yes", 9)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "9"
    assert "\n" not in response.status
