"""SingleMalt under WebTest's lint: every branch of the decision, with Dummy collaborators."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import webtest

from singlemalt import (
    Action,
    Allowed,
    Decision,
    Denied,
    Identity,
    LoginThrottle,
    Malformed,
    PasswordHasher,
    ProxyTrust,
    SafeMemcache,
    Scope,
    SingleMalt,
    Target,
    TokenRecord,
    UserRecord,
    VerificationCache,
    Verifier,
    new_token,
)
from singlemalt.checkbudget import CheckBudget
from singlemalt.tokens import IssuedToken

REALM = 'Basic realm="test", charset="UTF-8"'
SECRET = b"middleware-test-secret-0123456789"


class DummyStore:
    def __init__(self, hasher: PasswordHasher) -> None:
        self.users = {"alice": UserRecord("alice", hasher.hash("alice-pw"), 1),
                      "bob": UserRecord("bob", hasher.hash("bob-pw"), 1)}
        self.tokens: dict[str, TokenRecord] = {}

    def user(self, username: str) -> UserRecord | None:
        return self.users.get(username)

    def token(self, token_id: str) -> TokenRecord | None:
        return self.tokens.get(token_id)

    def issue(self, username: str, scope: Scope) -> IssuedToken:
        issued = new_token()
        self.tokens[issued.token_id] = TokenRecord(
            issued.token_id, username, issued.secret_hash, scope, None, False)
        return issued


def dummy_classify(environ: dict[str, Any]) -> Target | Malformed:
    """GET reads, anything else writes; "/bad..." is malformed."""
    path = environ["PATH_INFO"].strip("/")
    if path.startswith("bad"):
        return Malformed("bad path")
    action = Action.READ if environ["REQUEST_METHOD"] in ("GET", "HEAD") else Action.WRITE
    return Target(path, action, "dummy:" + environ["REQUEST_METHOD"])


#: What dummy_authorize resolved a public repository to; it reaches the app.
PUBLIC_RECORD = {"name": "public/demo", "secret": "never-in-a-repr"}


def dummy_authorize(identity: Identity | None, target: Target) -> Decision:
    """alice owns alice/*; public/* is readable by all; bob can see (not change) alice/shared."""
    user = identity.username if identity else None
    if user and target.repository.startswith(user + "/"):
        return Allowed("owner")
    if target.repository.startswith("public/"):
        if target.action is Action.READ:
            return Allowed("public", resource=PUBLIC_RECORD)
        return Denied("public repositories are read-only", reveal=True)
    if user == "bob" and target.repository == "alice/shared":
        if target.action is Action.READ:
            return Allowed("collaborator")
        return Denied("bob may only read alice/shared", reveal=True)
    return Denied("no such repository or no access")


class DummyApp:
    """Records the environ it was called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"hello {environ.get('REMOTE_USER', 'anonymous')}\n".encode()]


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": "Basic " + raw}


class World:
    def __init__(self, hasher: PasswordHasher, memcache: SafeMemcache, **options: Any) -> None:
        self.store = DummyStore(hasher)
        self.verifier = Verifier(self.store, hasher=hasher)
        self.throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=3)
        self.app = DummyApp()
        self.address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
        options.setdefault("throttle", self.throttle)
        self.middleware = SingleMalt(self.app, classify=dummy_classify, verifier=self.verifier,
                                     authorize=dummy_authorize, realm="test", **options)
        self.client = webtest.TestApp(self.middleware, lint=True,
                                      extra_environ={"REMOTE_ADDR": self.address})

    @property
    def environ(self) -> dict[str, Any]:
        return self.app.calls[-1]


@pytest.fixture
def memcache(memcached_factory: Any) -> SafeMemcache:
    """A memcached of its own per test, so throttle counts never leak between tests."""
    return SafeMemcache(memcached_factory().address)


@pytest.fixture
def world(hasher: PasswordHasher, memcache: SafeMemcache) -> World:
    return World(hasher, memcache)


def test_anonymous_read_of_a_public_repository(world: World) -> None:
    response = world.client.get("/public/demo")
    assert response.text == "hello anonymous\n"
    env = world.environ
    assert "REMOTE_USER" not in env
    assert env["singlemalt.identity"] is None
    assert env["singlemalt.target"] == Target("public/demo", Action.READ, "dummy:GET")
    assert env["singlemalt.decision"] == Allowed("public", resource=PUBLIC_RECORD)
    # The app gets the authorizer's own object, not a copy; the repr, which
    # goes to logs, leaves it out.
    assert env["singlemalt.decision"].resource is PUBLIC_RECORD
    assert "never-in-a-repr" not in repr(env["singlemalt.decision"])


@pytest.mark.parametrize("path", ["/alice/private", "/nobody/nothing", "/public/demo"])
def test_anonymous_denied_is_challenged_whether_or_not_the_repo_exists(
    world: World, path: str
) -> None:
    response = world.client.post(path, status=401)
    assert response.headers["WWW-Authenticate"] == REALM
    assert not world.app.calls


def test_password_login(world: World) -> None:
    response = world.client.get("/alice/private", headers=basic("alice", "alice-pw"))
    assert response.text == "hello alice\n"
    assert world.environ["REMOTE_USER"] == "alice"
    assert world.environ["singlemalt.identity"] == Identity("alice", "password", Scope.WRITE)
    assert world.environ["singlemalt.decision"] == Allowed("owner")


def test_write_by_the_owner(world: World) -> None:
    world.client.post("/alice/private", params=b"data", headers=basic("alice", "alice-pw"))
    assert world.environ["singlemalt.target"].action is Action.WRITE


def test_wrong_password_is_challenged_and_counted(world: World) -> None:
    for _ in range(2):
        response = world.client.get("/public/demo", headers=basic("alice", "nope"), status=401)
        assert response.headers["WWW-Authenticate"] == REALM
    assert not world.throttle.blocked(world.address, "alice")
    world.client.get("/public/demo", headers=basic("alice", "nope"), status=401)
    assert world.throttle.blocked(world.address, "alice")
    assert not world.app.calls


def test_locked_out_logins_get_429_without_a_password_check(world: World) -> None:
    for _ in range(3):
        world.client.get("/alice/x", headers=basic("alice", "nope"), status=401)
    before = world.verifier.slow_verifications
    response = world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=429)
    assert response.headers["Retry-After"] == "300"
    assert world.verifier.slow_verifications == before
    world.client.get("/public/demo", status=200)  # anonymous requests are not throttled


def test_a_login_that_just_passed_skips_the_lock_read_but_a_guess_does_not(
    world: World, memcache: SafeMemcache
) -> None:
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    # Another worker locks alice out from this address meanwhile.
    other_worker = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=3)
    for _ in range(3):
        other_worker.record_failure(world.address, "alice")
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)  # remembered
    world.client.get("/alice/x", headers=basic("alice", "guess"), status=429)  # read: locked
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=429)  # forgotten


def test_anonymous_requests_never_count_as_failures(world: World) -> None:
    for _ in range(10):
        world.client.get("/alice/private", status=401)
    assert not world.throttle.blocked(world.address, None)
    world.client.get("/alice/private", headers=basic("alice", "alice-pw"), status=200)


def test_unusable_authorization_header_is_challenged_but_not_counted(world: World) -> None:
    for _ in range(5):
        response = world.client.get("/public/demo", headers={"Authorization": "Basic !!!"},
                                    status=401)
        assert response.headers["WWW-Authenticate"] == REALM
    assert not world.throttle.blocked(world.address, None)


def test_blank_authorization_header_is_anonymous(world: World) -> None:
    world.client.get("/public/demo", headers={"Authorization": "  "}, status=200)


def test_malformed_request_is_400_before_credentials_are_checked(world: World) -> None:
    response = world.client.get("/bad/thing", headers=basic("alice", "alice-pw"), status=400)
    assert response.status == "400 bad path"
    assert response.text == "bad path\n"
    assert world.verifier.slow_verifications == 0


def test_denied_but_revealed_is_403_with_the_reason(world: World) -> None:
    response = world.client.post("/alice/shared", headers=basic("bob", "bob-pw"), status=403)
    assert response.status == "403 bob may only read alice/shared"
    assert response.text == "bob may only read alice/shared\n"


def test_denied_and_hidden_is_404(world: World) -> None:
    response = world.client.get("/alice/private", headers=basic("bob", "bob-pw"), status=404)
    assert "alice" not in response.text


def test_bearer_token(world: World) -> None:
    issued = world.store.issue("alice", Scope.WRITE)
    world.client.post("/alice/repo", headers={"Authorization": "Bearer " + issued.token})
    assert world.environ["singlemalt.identity"] == Identity(
        "alice", "token", Scope.WRITE, issued.token_id)
    assert world.environ["REMOTE_USER"] == "alice"


def test_bearer_failure_counts_the_address(world: World) -> None:
    for _ in range(3):
        world.client.get("/public/demo", headers={"Authorization": "Bearer smt_nope"}, status=401)
    assert world.throttle.blocked(world.address, None)


def test_read_only_token_reads(world: World) -> None:
    issued = world.store.issue("alice", Scope.READ)
    world.client.get("/alice/repo", headers=basic("alice", issued.token), status=200)
    assert world.environ["singlemalt.identity"].method == "token"


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        pytest.param("alice", "/alice/repo", 403, id="allowed-otherwise"),
        pytest.param("bob", "/alice/shared", 403, id="visible-but-denied"),
        pytest.param("bob", "/public/demo", 403, id="public-read-only"),
        pytest.param("bob", "/alice/private", 404, id="invisible"),
    ],
)
def test_read_only_token_asking_to_write(world: World, user: str, path: str, status: int) -> None:
    issued = world.store.issue(user, Scope.READ)
    response = world.client.post(path, headers=basic(user, issued.token), status=status)
    if status == 403:
        assert response.status == "403 token is read-only"
    assert not world.app.calls


def test_incoming_remote_user_is_removed(world: World) -> None:
    world.client.get("/public/demo", extra_environ={"REMOTE_USER": "alice"})
    assert "REMOTE_USER" not in world.environ
    world.client.get("/alice/private", extra_environ={"REMOTE_USER": "alice"}, status=401)


def test_trusted_remote_user(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = World(hasher, memcache, trust_remote_user=True)
    world.client.post("/alice/repo", extra_environ={"REMOTE_USER": "alice"})
    assert world.environ["singlemalt.identity"] == Identity("alice", "remote-user", Scope.WRITE)
    assert world.environ["REMOTE_USER"] == "alice"
    assert world.verifier.slow_verifications == 0
    world.client.get("/alice/repo", extra_environ={"REMOTE_USER": ""}, status=401)
    world.client.get("/alice/repo", headers=basic("alice", "alice-pw"), status=200)


def test_without_a_throttle(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = World(hasher, memcache, throttle=None)
    for _ in range(5):
        world.client.get("/alice/x", headers=basic("alice", "nope"), status=401)
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)


def test_trusted_proxy_sets_the_client(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = World(hasher, memcache, proxy=ProxyTrust(["192.0.2.0/24"]))
    client = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    headers = {"X-Forwarded-For": f"6.6.6.6, {client}", "X-Forwarded-Proto": "https"}
    world.client.get("/public/demo", headers=headers)
    env = world.environ
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == (client, "https")
    assert env["singlemalt.orig"] == {"REMOTE_ADDR": world.address, "wsgi.url_scheme": "http"}
    for _ in range(3):
        world.client.get("/x/y", headers=headers | basic("alice", "nope"), status=401)
    assert world.throttle.blocked(client, None)
    assert not world.throttle.blocked(world.address, None)


def test_untrusted_forwarded_headers_are_ignored(world: World) -> None:
    world.client.get("/public/demo", headers={"X-Forwarded-For": "6.6.6.6",
                                              "X-Forwarded-Proto": "https"})
    assert (world.environ["REMOTE_ADDR"], world.environ["wsgi.url_scheme"]) == (
        world.address, "http")


def test_early_reply_drains_small_bodies_and_closes_after_large_ones(
    hasher: PasswordHasher, memcache: SafeMemcache
) -> None:
    world = World(hasher, memcache, drain_limit=1024)
    small = world.client.post("/alice/repo", params=b"x" * 1000, status=401)
    assert "Connection" not in small.headers
    large = world.client.post("/alice/repo", params=b"x" * 5000, status=401)
    assert large.headers["Connection"] == "close"


def classify_by_query(environ: dict[str, Any]) -> Target | Malformed:
    """Like hg's wire protocol: the query, not the method, says read or write."""
    action = Action.READ if environ["QUERY_STRING"] == "read" else Action.WRITE
    return Target(environ["PATH_INFO"].strip("/"), action, "dummy:" + environ["QUERY_STRING"])


def test_refused_writes_are_drained_up_to_the_write_limit_and_reads_are_not(world: World) -> None:
    """hg sends a whole push before it reads the answer: a refused write is read
    to the end (up to write_drain_limit) so the client sees the 401, not a reset.
    A refused read keeps the small limit: a stranger cannot make us read much."""
    middleware = SingleMalt(world.app, classify=classify_by_query, verifier=world.verifier,
                            authorize=dummy_authorize, drain_limit=1024, write_drain_limit=100_000)
    client = webtest.TestApp(middleware, lint=True)
    body = b"x" * 50_000
    for path in ("/alice/repo?write", "/public/repo?write"):  # 401 (challenge) and 401 (read-only for anonymous)
        assert "Connection" not in client.post(path, params=body, status=401).headers
    assert "Connection" not in client.post("/alice/repo?write", params=body, headers=basic("bob", "bob-pw"),
                                           status=404).headers
    assert client.post("/alice/repo?write", params=body * 3, status=401).headers["Connection"] == "close"
    assert client.post("/alice/repo?read", params=body, status=401).headers["Connection"] == "close"
    assert "Connection" not in client.post("/alice/repo?read", params=b"x" * 1000, status=401).headers
    assert not world.app.calls


def test_malformed_requests_keep_the_small_drain_limit(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = World(hasher, memcache, drain_limit=1024, write_drain_limit=100_000)
    response = world.client.post("/bad/repo", params=b"x" * 5000, status=400)
    assert response.headers["Connection"] == "close"


def test_write_drain_limit_defaults_to_the_drain_limit(hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    world = World(hasher, memcache, drain_limit=1024)
    assert world.middleware.write_drain_limit == 1024
    response = world.client.post("/alice/repo", params=b"x" * 5000, status=401)
    assert response.headers["Connection"] == "close"


def test_write_drain_limit_below_the_drain_limit_is_refused(world: World) -> None:
    with pytest.raises(ValueError):
        SingleMalt(world.app, classify=dummy_classify, verifier=world.verifier,
                   authorize=dummy_authorize, drain_limit=1024, write_drain_limit=1000)


def test_head_challenge_has_no_body(world: World) -> None:
    response = world.client.head("/alice/private", status=401)
    assert response.body == b""


def test_the_app_iterable_is_returned_untouched(world: World) -> None:
    class Body:
        closed = False

        def __iter__(self) -> Iterator[bytes]:
            yield b"streamed"

        def close(self) -> None:
            self.closed = True

    body = Body()

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    middleware = SingleMalt(app, classify=dummy_classify, verifier=world.verifier,
                            authorize=dummy_authorize)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/public/x", "wsgi.url_scheme": "http",
               "REMOTE_ADDR": "192.0.2.1"}
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    assert middleware(environ, start_response) is body
    assert webtest.TestApp(middleware, lint=True).get("/public/x").text == "streamed"
    assert body.closed


def test_one_log_line_per_decision_without_secrets(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="singlemalt.middleware")
    issued = world.store.issue("alice", Scope.READ)
    world.client.get("/alice/repo", headers=basic("alice", "alice-pw"))
    world.client.get("/alice/repo", headers=basic("alice", "wrong-pw"), status=401)
    world.client.post("/alice/repo", headers=basic("alice", issued.token), status=403)
    world.client.get("/bad", status=400)
    # Only the middleware's own lines: other singlemalt modules log too (the
    # verifier's slow hash line) when another test left the root logger at INFO.
    messages = [r.getMessage() for r in caplog.records if r.name == "singlemalt.middleware"]
    assert len(messages) == 4
    assert messages[0] == (f"allowed user='alice' client={world.address} repository='alice/repo' "
                           "action=read operation=dummy:GET reason='owner'")
    assert messages[1].startswith("challenge user='alice'")
    assert "reason='invalid credentials'" in messages[1]
    assert messages[2].startswith("forbidden user='alice'") and "token is read-only" in messages[2]
    assert messages[3].startswith("malformed user=None") and "repository=None" in messages[3]
    text = "\n".join(messages)
    assert "alice-pw" not in text and "wrong-pw" not in text and issued.token[17:] not in text


@pytest.mark.parametrize("realm", ['a"b', "a\\b", "", "caf\u00e9", "a\nb"])
def test_bad_realm_is_refused(world: World, realm: str) -> None:
    with pytest.raises(ValueError):
        SingleMalt(world.app, classify=dummy_classify, verifier=world.verifier,
                   authorize=dummy_authorize, realm=realm)


def test_negative_drain_limit_is_refused(world: World) -> None:
    with pytest.raises(ValueError):
        SingleMalt(world.app, classify=dummy_classify, verifier=world.verifier,
                   authorize=dummy_authorize, drain_limit=-1)


@pytest.mark.parametrize("answer", [None, True, "yes", Allowed], ids=["none", "true", "str", "cls"])
def test_anything_but_a_decision_is_a_denial(world: World, answer: Any) -> None:
    middleware = SingleMalt(world.app, classify=dummy_classify, verifier=world.verifier,
                            authorize=lambda identity, target: answer)
    client = webtest.TestApp(middleware, lint=True)
    client.get("/public/demo", status=401)
    client.get("/alice/x", headers=basic("alice", "alice-pw"), status=404)
    assert not world.app.calls


def test_memcached_dying_mid_test_changes_nothing_visible(
    hasher: PasswordHasher, memcached_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = memcached_factory()
    memcache = SafeMemcache(server.address)
    world = World(hasher, memcache)
    world.verifier = Verifier(world.store, hasher=hasher,
                              cache=VerificationCache(memcache, b"k" * 32, local_ttl=0))
    world.middleware.verifier = world.verifier
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    server.kill()
    for _ in range(20):
        world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
        world.client.get("/alice/x", headers=basic("alice", "nope"), status=401)
    memcache_warnings = [r for r in caplog.records if r.name == "singlemalt.memcache"]
    assert len(memcache_warnings) == 1


def test_a_shared_address_under_attack_keeps_serving_its_known_users(world: World) -> None:
    """An office NAT: someone there tries many accounts; alice, who logged in from there before, keeps working.

    On the old code the address lock answered 429 to alice too.
    """
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    for number in range(3):  # address_limit=3: the address is now locked for unknown credentials
        world.client.get("/alice/x", headers=basic(f"nobody{number}", "guess"), status=401)
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    world.client.get("/alice/shared", headers=basic("bob", "bob-pw"), status=429)  # right password, never seen here
    before = world.verifier.slow_verifications
    world.client.get("/alice/x", headers=basic("alice", "guess"), status=429)  # a guess is an unknown credential
    assert world.verifier.slow_verifications == before  # refused without a password check
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)


def test_failures_lock_the_account_in_every_spelling(world: World) -> None:
    """On the old code ``ALICE`` got through the lock that three failures as ``alice`` set."""
    for _ in range(3):
        world.client.get("/alice/x", headers=basic("alice", "nope"), status=401)
    for spelling in ("ALICE", "Alice"):
        world.client.get("/alice/x", headers=basic(spelling, "alice-pw"), status=429)


def test_guesses_beyond_the_check_budget_get_429_without_hashing_and_known_users_go_on(
        hasher: PasswordHasher, memcache: SafeMemcache) -> None:
    """Each guess costs an argon2 check: from an address that keeps failing, past the worker's budget,
    it costs nothing and gets 429.

    On the old code every guess was hashed (and answered 401) until the
    address had failed often enough to be locked.
    """
    throttle = LoginThrottle(memcache, secret=SECRET, limit=3, address_limit=50, suspect_after=2,
                             checks=CheckBudget(rate=1e-9, burst=1, address_rate=1e-9, address_burst=1))
    world = World(hasher, memcache, throttle=throttle)
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)
    for guess in range(3):  # two failures make the address a suspect; the third guess spends the budget
        world.client.get("/alice/x", headers=basic(f"nobody{guess}", "guess"), status=401)
    before = world.verifier.slow_verifications
    refused = world.client.get("/alice/x", headers=basic("nobody3", "guess"), status=429)
    assert refused.headers["Retry-After"] == "2" and "retry in a few seconds" in refused.text
    world.client.get("/alice/shared", headers=basic("bob", "bob-pw"), status=429)  # never seen from here
    assert world.verifier.slow_verifications == before  # refused without a password check
    world.client.get("/alice/x", headers=basic("alice", "alice-pw"), status=200)  # known: no budget needed
