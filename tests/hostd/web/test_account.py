"""Signing in and out with the form, and the home page, through the web pool's whole stack."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store.accounts import Level
from hostd.store.database import Database
from hostd.store.records import Records
from hostd.store.sessions import Sessions, token_hash
from hostd.web.account import local_path
from hostd.web.session import CSRF_COOKIE, SESSION_COOKIE
from singlemalt import LoginThrottle, SafeMemcache, Scope, Verifier
from singlemalt.checkbudget import CheckBudget
from tests.hostd.conftest import Site
from tests.hostd.web.conftest import BASE_URL, HASHER
from tests.hostd.web.pool import SECRET, basic, browser, cookies, sign_in
from tests.singlemalt.conftest import Memcached, start_memcached

ALICE = ("alice", "password-alice")
#: Failed sign-ins that lock an account out from one address, in these tests.
LIMIT = 3


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    """A memcached of this test's own: throttle counts never leak between tests."""
    server = start_memcached()
    yield server
    server.kill()


@pytest.fixture
def throttle(memcached: Memcached) -> LoginThrottle:
    return LoginThrottle(SafeMemcache(memcached.address), secret=SECRET, limit=LIMIT, lockout=300)


@pytest.fixture
def alice(site: Site) -> Site:
    site.repo("alice", "notes", "git")
    return site


def test_signing_in_starts_a_session_and_goes_where_the_visitor_was_going(
        alice: Site, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = browser(alice)
    caplog.set_level(logging.DEBUG)
    form = client.get("/login?next=/alice/notes").forms[0]
    before = cookies(client)  # the sign-in form's CSRF cookie
    form["username"], form["password"] = ALICE
    done = form.submit(status=303)
    assert done.location == BASE_URL + "/alice/notes"
    assert "WWW-Authenticate" not in done.headers and done.headers["Cache-Control"] == "no-store"
    session_header, csrf_header = done.headers.getall("Set-Cookie")
    assert session_header.startswith(SESSION_COOKIE + "=") and "; Secure; HttpOnly; SameSite=Lax" in session_header
    after = cookies(client)
    assert after[CSRF_COOKIE] != before[CSRF_COOKIE] and csrf_header.startswith(CSRF_COOKIE + "=")
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT token_hash, username FROM web_sessions").fetchall()
    assert stored == [(token_hash(after[SESSION_COOKIE]), "alice")]
    home = client.get("/")
    assert "Your repositories" in home.text and ">alice</a>" in home.text
    assert "password-alice" not in caplog.text and after[SESSION_COOKIE] not in caplog.text
    assert "signed in user='alice'" in caplog.text


def test_every_sign_in_is_a_new_session_so_a_planted_one_is_never_promoted(alice: Site) -> None:
    client = browser(alice)
    planted = "p" * 43
    client.set_cookie(SESSION_COOKIE, planted)
    sign_in(client, *ALICE)
    first = cookies(client)[SESSION_COOKIE]
    assert first != planted
    # Signing in again while signed in (a form left open in another tab): a new session, the old one ended.
    csrf = client.get("/").forms[0]["csrf"].value
    client.post("/login", {"csrf": csrf, "username": "alice", "password": "password-alice"}, status=303)
    second = cookies(client)[SESSION_COOKIE]
    assert second not in (first, planted)
    replay = browser(alice)
    replay.set_cookie(SESSION_COOKIE, first)
    assert ">alice</a>" not in replay.get("/").text
    assert ">alice</a>" in client.get("/").text


def test_a_wrong_password_shows_the_form_again_without_a_browser_dialog(alice: Site) -> None:
    client = browser(alice)
    page = sign_in(client, "alice", "wrong", status=401)
    assert "Wrong username or password." in page.text and 'value="alice"' in page.text
    assert "WWW-Authenticate" not in page.headers and page.content_type == "text/html"
    assert SESSION_COOKIE not in cookies(client)
    unknown = sign_in(client, "nobody", "whatever", status=401)
    assert "Wrong username or password." in unknown.text


def test_the_form_locks_out_as_basic_does_and_shares_its_counts(alice: Site, throttle: LoginThrottle) -> None:
    client = browser(alice, throttle, address="192.0.2.77")
    for _ in range(LIMIT - 1):
        sign_in(client, "alice", "wrong", status=401)
    client.get("/alice/notes", headers=basic("alice", "wrong"), status=401)  # a script's failure counts too
    locked = sign_in(client, *ALICE, status=429)
    assert "Too many failed sign-ins for this account from your address. Try again in 5 minutes." in locked.text
    assert locked.headers["Retry-After"] == "300" and "WWW-Authenticate" not in locked.headers
    assert SESSION_COOKIE not in cookies(client)
    client.get("/alice/notes", headers=basic(*ALICE), status=429)  # and Basic is locked as well
    # Another address, or another account from this one, is not.
    sign_in(browser(alice, throttle, address="192.0.2.78"), *ALICE)
    alice.accounts.add_user("bob", "password-bob")
    sign_in(client, "bob", "password-bob")


def test_past_the_check_budget_the_form_says_to_wait_a_moment(alice: Site, memcached: Memcached) -> None:
    budgeted = LoginThrottle(SafeMemcache(memcached.address), secret=SECRET, limit=10, suspect_after=1,
                             checks=CheckBudget(rate=1e-9, burst=1, address_rate=1e-9, address_burst=1))
    client = browser(alice, budgeted)
    sign_in(client, "nobody", "guess", status=401)  # a suspect address now
    sign_in(client, "nobody", "guess", status=401)  # the budget's one check
    busy = sign_in(client, *ALICE, status=429)
    assert "Try again in a few seconds." in busy.text and busy.headers["Retry-After"] == "2"


class Disconnected:
    """A change feed that is not connected: Records reads through to the database every time."""

    connected = False


def test_while_the_database_is_down_signing_in_is_a_503_that_says_so(alice: Site, tmp_path: Path) -> None:
    alice.accounts.db = Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)
    # As the pool has it: the verifier reads through the records cache (nothing cached here).
    cached = browser(alice, verifier=Verifier(Records(alice.accounts, Disconnected()), hasher=HASHER))
    page = sign_in(cached, *ALICE, status=503)
    assert "Signing in is not possible right now: hostd&#39;s database is unavailable" in page.text
    assert page.headers["Retry-After"] == "5"
    # Read straight from the database, the outage is the page's 503 as well.
    assert "database is unavailable" in sign_in(browser(alice), *ALICE, status=503).text


def test_an_access_token_is_not_a_password_here(alice: Site) -> None:
    token = alice.accounts.create_token("alice", Scope.READ, None).token
    client = browser(alice)
    page = sign_in(client, "alice", token, status=400)
    assert "That is an access token" in page.text
    assert SESSION_COOKIE not in cookies(client)


def test_an_empty_or_oversized_form_is_answered_not_checked(alice: Site) -> None:
    client = browser(alice)
    assert "Enter your username and password." in sign_in(client, "alice", "", status=400).text
    assert "Wrong username" in sign_in(client, "alice", "x" * 1025, status=401).text
    assert "Wrong username" in sign_in(client, "a" * 201, "x", status=401).text


def test_a_user_deleted_while_signing_in_gets_no_session(alice: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    client = browser(alice)
    alice.accounts.add_user("carol", "password-carol")
    page = client.get("/login")
    form = page.forms[0]
    form["username"], form["password"] = "carol", "password-carol"
    original = Sessions.create

    def deleted_meanwhile(self: Sessions, username: str) -> str:
        alice.accounts.delete_user(username)
        return original(self, username)

    monkeypatch.setattr(Sessions, "create", deleted_meanwhile)
    assert "Wrong username" in form.submit(status=401).text


@pytest.mark.parametrize("probe", [
    "//evil.test", "//evil.test/x", "https://evil.test", "http:evil.test", "/\\evil.test", "\\\\evil.test",
    "/\t/evil.test", "/\n/evil.test", "javascript:alert(1)", "evil.test", "", "%2F%2Fevil.test", "/\x7f/x",
    "///evil.test",
])
def test_an_open_redirect_probe_goes_home(alice: Site, probe: str) -> None:
    client = browser(alice)
    page = client.get("/login", params={"next": probe})
    form = page.forms[0]
    assert form["next"].value == "/"  # the form never carries it
    form["next"].force_value(probe)  # and a forged form does not get it through
    form["username"], form["password"] = ALICE
    assert form.submit(status=303).location == BASE_URL + "/"
    assert local_path(probe) == "/"


@pytest.mark.parametrize("path, location", [
    ("/alice/notes", "/alice/notes"),
    ("/alice/notes/tree/main?x=1&y=2#top", "/alice/notes/tree/main?x=1&y=2#top"),
    ("/zoë/café", "/zo%C3%AB/caf%C3%A9"),
    ("/a b", "/a%20b"),
])
def test_a_local_path_is_kept(path: str, location: str) -> None:
    assert local_path(path) == location


def test_signed_in_the_form_sends_you_on(alice: Site) -> None:
    client = browser(alice)
    sign_in(client, *ALICE)
    assert client.get("/login?next=/alice/notes", status=303).location == BASE_URL + "/alice/notes"


def test_the_sign_in_form_needs_its_csrf_cookie(alice: Site) -> None:
    client = browser(alice)
    form = client.get("/login").forms[0]
    form["username"], form["password"] = ALICE
    client.cookiejar.clear()
    refused = form.submit(status=403)
    assert "security token does not match" in refused.text
    assert SESSION_COOKIE not in cookies(client)


def test_signing_out_ends_the_session(alice: Site, database_url: str) -> None:
    client = browser(alice)
    sign_in(client, *ALICE)
    token = cookies(client)[SESSION_COOKIE]
    home = client.get("/")
    out = home.forms[0]  # the header's sign-out form
    assert out.action == "/logout"
    done = out.submit(status=303)
    assert done.location == BASE_URL + "/"
    assert any(h.startswith(SESSION_COOKIE + "=;") and "Max-Age=0" in h for h in done.headers.getall("Set-Cookie"))
    assert SESSION_COOKIE not in cookies(client)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM web_sessions").fetchone() == (0,)
    replay = browser(alice)
    replay.set_cookie(SESSION_COOKIE, token)
    assert ">alice</a>" not in replay.get("/").text
    client.get("/logout", status=405)


def test_signing_out_needs_the_pages_token(alice: Site) -> None:
    client = browser(alice)
    sign_in(client, *ALICE)
    client.post("/logout", {"csrf": "forged"}, status=403)
    client.post("/logout", status=403)
    assert ">alice</a>" in client.get("/").text


def test_the_home_page_lists_own_shared_and_public_repositories(site: Site) -> None:
    site.repo("alice", "mine", "git")
    site.repo("alice", "open", "hg", public=True)
    site.repo("bob", "private-shared", "git")
    site.repo("bob", "public-shared", "hg", public=True)
    site.repo("bob", "hidden", "git")
    site.repo("carol", "elsewhere", "git", public=True)
    site.accounts.grant("alice", RepoName("bob", "private-shared"), Level.READ)
    site.accounts.grant("alice", RepoName("bob", "public-shared"), Level.WRITE)
    client = browser(site)
    anonymous = client.get("/").text
    assert "Sign in</a> to see your repositories" in anonymous
    assert "Your repositories" not in anonymous and "bob/hidden" not in anonymous and "private-shared" not in anonymous
    for public in ("alice/open", "bob/public-shared", "carol/elsewhere"):
        assert f'href="/{public}"' in anonymous
    sign_in(client, "alice", "password-alice")
    page = client.get("/").text
    own, rest = page.split("Shared with you")
    shared, public = rest.split("Public repositories")
    assert 'href="/alice/mine"' in own and 'href="/alice/open"' in own and "bob/" not in own
    assert 'href="/bob/private-shared"' in shared and 'href="/bob/public-shared"' in shared
    assert '<span class="badge private">private</span>' in shared and ">read</span>" in shared
    assert ">write</span>" in shared and "bob/hidden" not in page and "alice/" not in shared
    assert 'href="/carol/elsewhere"' in public and "bob/private-shared" not in public


def test_an_empty_home_page_says_so(site: Site) -> None:
    site.accounts.add_user("dave", "password-dave")
    client = browser(site)
    sign_in(client, "dave", "password-dave")
    page = client.get("/").text
    assert "None yet." in page and "Nothing is shared with you yet." in page
