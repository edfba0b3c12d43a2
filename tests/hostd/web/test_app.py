"""The web tier's frame: classification, policy, routing, static files, error pages and their headers."""

from __future__ import annotations

import pytest
import webtest
from webob import Response

from hostd.names import RESERVED, normalize_name
from hostd.web.app import WebApp
from hostd.web.classify import SITE_SECTIONS, WebPolicy, classify_web
from hostd.web.render import CONTENT_SECURITY_POLICY, PageError, Renderer
from hostd.web.router import route
from hostd.web.visit import Visit
from singlemalt import Action, Allowed, Denied, Identity, Scope, Target
from tests.hostd.conftest import Site
from tests.hostd.web.conftest import BASE_URL, browse

WEB_CASES = [
    ("GET", "/", Target("", Action.READ, "web:home")),
    ("GET", "/login", Target("", Action.READ, "web:login")),
    ("POST", "/login", Target("", Action.WRITE, "web:login")),
    ("POST", "/logout", Target("", Action.WRITE, "web:logout")),
    ("GET", "/settings/tokens", Target("", Action.READ, "web:settings")),
    ("POST", "/settings/tokens", Target("", Action.WRITE, "web:settings")),
    ("GET", "/static/site.css", Target("", Action.READ, "web:static")),
    ("GET", "/alice", Target("", Action.READ, "web:alice")),
    ("GET", "/alice/proj", Target("alice/proj", Action.READ, "web:GET")),
    ("GET", "/alice/proj/tree/main/src", Target("alice/proj", Action.READ, "web:GET")),
    ("HEAD", "/alice/proj/raw/main/a", Target("alice/proj", Action.READ, "web:HEAD")),
    ("POST", "/alice/proj", Target("alice/proj", Action.WRITE, "web:POST")),
    ("DELETE", "/", Target("", Action.WRITE, "web:home")),
    ("PUT", "/alice", Target("", Action.WRITE, "web:alice")),
]


@pytest.mark.parametrize(("method", "path", "expected"), WEB_CASES, ids=[f"{m} {p}" for m, p, _ in WEB_CASES])
def test_classify_web(method: str, path: str, expected: Target) -> None:
    assert classify_web({"REQUEST_METHOD": method, "PATH_INFO": path}) == expected


ALICE = Identity("alice", "password", Scope.WRITE)
READER = Identity("alice", "token", Scope.READ, token_id="t1")
POLICY_CASES = [
    (None, "GET", "/", Allowed),
    (None, "GET", "/login", Allowed),
    (None, "POST", "/login", Allowed),
    (None, "POST", "/logout", Allowed),
    (None, "GET", "/static/site.css", Allowed),
    (None, "GET", "/settings/tokens", Denied),
    (ALICE, "GET", "/settings/tokens", Allowed),
    (ALICE, "POST", "/settings/tokens", Allowed),
    (READER, "GET", "/settings/tokens", Allowed),
    (READER, "POST", "/settings/tokens", Denied),
    (None, "POST", "/", Denied),
    (ALICE, "PUT", "/alice", Denied),
    (None, "GET", "/alice/secret", Denied),
    (ALICE, "GET", "/alice/secret", Allowed),
]


@pytest.mark.parametrize(("identity", "method", "path", "expected"), POLICY_CASES,
                         ids=[f"{i.username if i else 'anonymous'}-{i.scope.value if i else ''} {m} {p}"
                              for i, m, p, _ in POLICY_CASES])
def test_web_policy(site: Site, identity: Identity | None, method: str, path: str, expected: type) -> None:
    site.repo("alice", "secret", "git")
    target = classify_web({"REQUEST_METHOD": method, "PATH_INFO": path})
    assert isinstance(target, Target)
    assert isinstance(WebPolicy(site.policy(None))(identity, target), expected)


def test_a_stranger_is_not_told_a_private_repository_exists(site: Site) -> None:
    site.repo("alice", "secret", "git")
    denied = WebPolicy(site.policy(None))(Identity("eve", "password", Scope.WRITE),
                                          Target("alice/secret", Action.READ, "web:GET"))
    assert isinstance(denied, Denied) and not denied.reveal


def _frame(*routes: object) -> webtest.TestApp:
    return webtest.TestApp(WebApp(list(routes), renderer=Renderer("hostd", BASE_URL), base_url=BASE_URL),  # type: ignore[arg-type]
                           lint=True)


def test_unknown_pages_are_styled_404s_with_the_site_headers(site: Site) -> None:
    page = browse(site).get("/no/such/page/at/all", status=404)
    assert page.content_type == "text/html"
    assert "no such page" in page.text and 'href="/"' in page.text
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "WWW-Authenticate" not in page.headers


def test_a_wrong_method_is_a_405_naming_the_allowed_ones() -> None:
    app = _frame(route("GET", r"/here", lambda visit: Response("ok")))
    assert app.get("/here").text == "ok"
    refused = app.post("/here", status=405)
    assert refused.headers["Allow"] == "GET, HEAD" and "does not take" in refused.text


def test_a_handler_refusal_is_rendered_with_its_reason_and_headers() -> None:
    def refuse(visit: Visit) -> Response:
        raise PageError(429, "Slow down <now>", headers={"Retry-After": "7"})

    page = _frame(route("GET", r"/x", refuse)).get("/x", status=429)
    assert "Slow down &lt;now&gt;" in page.text and "<now>" not in page.text
    assert page.headers["Retry-After"] == "7"


def test_route_groups_are_handler_arguments_and_names_need_not_be_utf8() -> None:
    seen: list[str] = []

    def show(visit: Visit, rest: str) -> Response:
        seen.append(rest)
        return Response("ok")

    app = _frame(route("GET", r"/f/(?P<rest>.*)", show))
    app.get("/f/a%20b/%FF%3Cx%3E")
    assert seen == ["a b/\udcff<x>"]
    assert seen[0].encode("utf-8", "surrogateescape") == b"a b/\xff<x>"


def test_the_header_shows_the_user_or_a_sign_in_link_back_to_the_page(site: Site) -> None:
    anonymous = browse(site).get("/nothing/here/x", status=404)
    assert 'href="/login?next=/nothing/here/x"' in anonymous.text
    signed_in = browse(site, "bob").get("/nothing/here/x", status=404)
    assert ">bob</a>" in signed_in.text and 'action="/logout"' in signed_in.text


def test_static_files(site: Site) -> None:
    css = browse(site).get("/static/site.css")
    assert css.content_type == "text/css" and "max-age=" in css.headers["Cache-Control"]
    assert browse(site).get("/static/site.js").content_type == "text/javascript"
    browse(site).get("/static/nothing.css", status=404)
    browse(site).get("/static/../app.py", status=404)


def test_no_account_or_repository_can_be_named_like_a_site_page() -> None:
    """``/settings/...`` is the site's: an owner named ``settings`` would have repositories nobody could open."""
    assert SITE_SECTIONS <= RESERVED
    assert all(normalize_name(section) is None for section in SITE_SECTIONS)
