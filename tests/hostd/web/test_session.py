"""SessionAuth under WebTest's lint, over real sessions in PostgreSQL: who is signed in, and which forms pass."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import webtest
from webob import Request

from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.sessions import Sessions
from hostd.web.render import Renderer
from hostd.web.session import (
    CSRF_COOKIE,
    MAX_FORM_BYTES,
    SESSION_COOKIE,
    Csrf,
    Session,
    SessionAuth,
    page_refusals,
    session_cookie,
)

SECRET = b"session-test-secret-0123456789abcdef"
BASE_URL = "https://example.test"
HTTPS = {"wsgi.url_scheme": "https", "HTTP_HOST": "example.test"}
CSRF = Csrf(SECRET)


class Inner:
    """The app behind SessionAuth: records what it saw; reads the form as a page would."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        self.seen.append({"user": environ.get("REMOTE_USER"), "session": environ.get("hostd.session"),
                          "csrf": environ.get("hostd.csrf"), "form": dict(request.POST)})
        headers = [("Content-Type", "text/plain")]
        if request.path_info == "/signs-in":
            headers.append(("Set-Cookie", session_cookie("n" * 43)))
        start_response("200 OK", headers)
        return [b"ok\n"]

    @property
    def last(self) -> dict[str, Any]:
        return self.seen[-1]


@pytest.fixture
def sessions(database: Database) -> Sessions:
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    return Sessions(database)


@pytest.fixture
def inner() -> Inner:
    return Inner()


def client(inner: Inner, sessions: Any, **options: Any) -> webtest.TestApp:
    app = SessionAuth(inner, sessions=sessions, secret=SECRET, base_url=BASE_URL, **options)
    return webtest.TestApp(app, lint=True, extra_environ=HTTPS)


def cookie(**values: str) -> dict[str, str]:
    names = {"session": SESSION_COOKIE, "csrf": CSRF_COOKIE}
    return {"Cookie": "; ".join(f"{names[k]}={v}" for k, v in values.items())}


def set_cookies(response: webtest.TestResponse) -> list[str]:
    return response.headers.getall("Set-Cookie")


def test_an_incoming_remote_user_is_removed(inner: Inner, sessions: Sessions) -> None:
    client(inner, sessions).get("/", extra_environ={"REMOTE_USER": "alice"})
    assert inner.last["user"] is None and inner.last["session"] is None


def test_a_live_session_signs_the_request_in(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    response = client(inner, sessions).get("/", headers=cookie(session=token))
    assert inner.last["user"] == "alice"
    assert inner.last["session"] == Session("alice", token) and token not in repr(inner.last["session"])
    assert inner.last["csrf"] == CSRF.for_session(token)
    assert set_cookies(response) == []


def test_an_ended_session_is_anonymous_and_its_cookie_removed(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    sessions.delete(token)
    response = client(inner, sessions).get("/", headers=cookie(session=token))
    assert inner.last["user"] is None
    removed, csrf = set_cookies(response)
    assert removed == f"{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    assert csrf.startswith(CSRF_COOKIE + "=")


def test_an_anonymous_visitor_gets_a_signed_double_submit_cookie_once(inner: Inner, sessions: Sessions) -> None:
    app = client(inner, sessions)
    [header] = set_cookies(app.get("/login"))
    value = header.split(";")[0].split("=", 1)[1]
    assert header == f"{CSRF_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    assert "Domain" not in header and len(value) == 43
    assert inner.last["csrf"] == CSRF.for_cookie(value) != value
    assert set_cookies(app.get("/login", headers=cookie(csrf=value))) == []
    assert inner.last["csrf"] == CSRF.for_cookie(value)
    # A cookie that is not one of ours is replaced.
    assert len(set_cookies(app.get("/login", headers=cookie(csrf="short")))) == 1


def test_the_session_cookie_is_secure_http_only_lax_host_only_and_lives_as_long_as_a_session() -> None:
    assert session_cookie("t" * 43) == (f"{SESSION_COOKIE}={'t' * 43}; Path=/; Secure; HttpOnly; SameSite=Lax;"
                                        " Max-Age=1209600")


def test_a_form_with_the_right_token_passes_and_the_page_can_still_read_it(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    app = client(inner, sessions)
    app.post("/logout", {"csrf": CSRF.for_session(token), "x": "1"}, headers=cookie(session=token))
    assert inner.last["form"] == {"csrf": CSRF.for_session(token), "x": "1"}
    value = "v" * 43
    app.post("/login", {"csrf": CSRF.for_cookie(value), "username": "alice"}, headers=cookie(csrf=value))
    assert inner.last["user"] is None and inner.last["form"]["username"] == "alice"


@pytest.mark.parametrize("form, cookies, reason", [
    ({}, {"csrf": "v" * 43}, "carries no security token"),
    ({"csrf": ""}, {"csrf": "v" * 43}, "carries no security token"),
    ({"csrf": CSRF.for_cookie("w" * 43)}, {"csrf": "v" * 43}, "does not match"),   # another browser's token
    ({"csrf": CSRF.for_cookie("v" * 43)}, {}, "does not match"),                   # no cookie sent
    ({"csrf": "v" * 43}, {"csrf": "v" * 43}, "does not match"),                    # the cookie itself
    ({"csrf": "é"}, {"csrf": "v" * 43}, "does not match"),
], ids=["missing", "empty", "wrong", "no-cookie", "unsigned", "non-ascii"])
def test_a_form_without_its_token_is_refused(
        inner: Inner, sessions: Sessions, form: dict[str, str], cookies: dict[str, str], reason: str) -> None:
    refused = client(inner, sessions).post("/login", form, headers=cookie(**cookies), status=403)
    assert reason in refused.text and "Reload the page" in refused.text
    assert refused.headers["Cache-Control"] == "no-store"
    assert inner.seen == []


def test_a_signed_in_form_needs_the_sessions_token_not_the_anonymous_one(inner: Inner, sessions: Sessions) -> None:
    token, other = sessions.create("alice"), sessions.create("alice")
    app = client(inner, sessions)
    for wrong in (CSRF.for_cookie("v" * 43), CSRF.for_session(other)):
        app.post("/logout", {"csrf": wrong}, headers=cookie(session=token, csrf="v" * 43), status=403)
    assert inner.seen == []


def test_every_method_but_get_and_head_is_checked(inner: Inner, sessions: Sessions) -> None:
    app = client(inner, sessions)
    for method in ("put", "delete", "patch", "options"):
        getattr(app, method)("/settings/keys", headers=cookie(csrf="v" * 43), status=403)
    app.head("/")
    assert len(inner.seen) == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.test"},
    {"Origin": "null"},
    {"Origin": "http://example.test"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "https://example.test.evil.test"},
], ids=["other-origin", "null", "plain-http", "cross-site", "same-site", "lookalike"])
def test_a_form_from_another_site_is_refused_even_with_the_right_token(
        inner: Inner, sessions: Sessions, headers: dict[str, str]) -> None:
    token = sessions.create("alice")
    refused = client(inner, sessions).post("/logout", {"csrf": CSRF.for_session(token)}, status=403,
                                           headers={**cookie(session=token), **headers})
    assert "this site's own pages only" in refused.text
    assert inner.seen == []


@pytest.mark.parametrize("headers", [
    {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"},
    {"Origin": "HTTPS://EXAMPLE.TEST"},
    {"Sec-Fetch-Site": "none"},
    {},
], ids=["same-origin", "case", "user-initiated", "old-browser"])
def test_a_form_from_the_site_itself_passes(inner: Inner, sessions: Sessions, headers: dict[str, str]) -> None:
    token = sessions.create("alice")
    client(inner, sessions).post("/logout", {"csrf": CSRF.for_session(token)}, headers={**cookie(session=token),
                                                                                         **headers})
    assert inner.last["user"] == "alice"


def test_the_host_the_browser_used_is_its_own_origin_too(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    client(inner, sessions).post("/logout", {"csrf": CSRF.for_session(token)},
                                 headers={**cookie(session=token), "Origin": "https://git.internal:8443"},
                                 extra_environ={"HTTP_HOST": "git.internal:8443"})
    assert inner.last["user"] == "alice"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_script_with_credentials_needs_no_token_and_cannot_borrow_a_session(
        inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    app = client(inner, sessions)
    app.post("/settings/tokens", {"label": "x"}, headers={**basic("bob", "pw"), **cookie(session=token)})
    assert inner.last["user"] is None and inner.last["session"] is None and inner.last["csrf"] == ""
    app.post("/settings/tokens", {"label": "x"}, headers={"Authorization": "Bearer smt_x"})
    assert len(inner.seen) == 2


def test_a_browser_sending_cached_basic_credentials_from_another_site_is_refused(
        inner: Inner, sessions: Sessions) -> None:
    client(inner, sessions).post("/settings/tokens", {"label": "x"}, status=403,
                                 headers={**basic("alice", "pw"), "Origin": "https://evil.test"})
    assert inner.seen == []


def test_forms_too_large_or_without_a_length_are_refused_unread(inner: Inner, sessions: Sessions) -> None:
    app = client(inner, sessions)
    value = "v" * 43
    big = {"csrf": CSRF.for_cookie(value), "key": "x" * MAX_FORM_BYTES}
    assert "larger than 64 KiB" in app.post("/settings/keys", big, headers=cookie(csrf=value), status=413).text
    chunked = app.post("/settings/keys", b"csrf=x", headers={**cookie(csrf=value), "Transfer-Encoding": "chunked"},
                       content_type="application/x-www-form-urlencoded", status=411)
    assert "with its length" in chunked.text
    assert inner.seen == []


def test_a_json_body_has_no_token(inner: Inner, sessions: Sessions) -> None:
    client(inner, sessions).post_json("/settings/keys", {"csrf": "x"}, headers=cookie(csrf="v" * 43), status=403)


def test_a_refusal_still_sets_the_new_csrf_cookie_so_a_reload_works(inner: Inner, sessions: Sessions) -> None:
    refused = client(inner, sessions).post("/login", {"csrf": "x"}, status=403)
    assert [c.split("=")[0] for c in set_cookies(refused)] == [CSRF_COOKIE]


def test_the_apps_own_cookie_comes_last_and_wins(inner: Inner, sessions: Sessions) -> None:
    response = client(inner, sessions).get("/signs-in", headers=cookie(session="e" * 43))
    expired, csrf, signed_in = set_cookies(response)
    assert expired.endswith("Max-Age=0") and csrf.startswith(CSRF_COOKIE) and signed_in.startswith(
        f"{SESSION_COOKIE}={'n' * 43};")


def test_a_malformed_cookie_header_costs_only_itself(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    client(inner, sessions).get("/", headers={"Cookie": f'other="a\\"b; junk; {SESSION_COOKIE}={token}'})
    assert inner.last["user"] == "alice"


def test_while_the_database_is_down_a_signed_in_page_is_503_and_anonymous_ones_are_served(
        inner: Inner, tmp_path: Path) -> None:
    down = Sessions(Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0))
    app = client(inner, down, refuse=page_refusals(Renderer("hostd", BASE_URL), BASE_URL),
                 anonymous_paths=("/static/",))
    refused = app.get("/", headers=cookie(session="s" * 43), status=503)
    assert refused.headers["Retry-After"] == "5" and "database is unavailable" in refused.text
    assert refused.content_type == "text/html"
    assert inner.seen == []
    app.get("/")
    app.get("/static/site.css", headers=cookie(session="s" * 43))
    assert [seen["user"] for seen in inner.seen] == [None, None]
    assert inner.seen[1]["csrf"] == ""


def test_refusals_are_the_sites_page_when_it_renders_them(inner: Inner, sessions: Sessions) -> None:
    token = sessions.create("alice")
    app = client(inner, sessions, refuse=page_refusals(Renderer("hostd", BASE_URL), BASE_URL))
    page = app.post("/logout", {"csrf": "x"}, headers=cookie(session=token), status=403)
    assert page.content_type == "text/html" and "does not match" in page.text
    assert "Content-Security-Policy" in page.headers and ">alice</a>" in page.text


def test_reprs_hold_no_secret(sessions: Sessions, inner: Inner) -> None:
    app = SessionAuth(inner, sessions=sessions, secret=SECRET, base_url=BASE_URL + "/")
    assert repr(app) == "<SessionAuth origin='https://example.test'>"
    assert repr(app.csrf) == "<Csrf>"
