"""singlemalt's refusals in the web pool: the sign-in form for anonymous browsers, pages for others."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import webtest

from hostd.web.classify import WebPolicy, classify_web
from hostd.web.refusals import BrowserRefusals
from hostd.web.render import Renderer
from singlemalt import SingleMalt, Verifier
from tests.hostd.conftest import Site
from tests.hostd.web.conftest import BASE_URL, web_app


def _pool(site: Site, user: str | None = None) -> webtest.TestApp:
    """BrowserRefusals(SingleMalt(web app)) as the pool has it; ``user`` stands for a signed-in session."""
    guarded = SingleMalt(web_app(site), classify=classify_web, verifier=Verifier(site.accounts),
                         authorize=WebPolicy(site.policy(None)), realm="hostd", trust_remote_user=True)
    app: Any = BrowserRefusals(guarded, renderer=Renderer("hostd", BASE_URL), base_url=BASE_URL)
    return webtest.TestApp(app, extra_environ={"REMOTE_USER": user} if user else {}, lint=True)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_private_and_missing_repositories_send_anonymous_visitors_to_the_same_form(site: Site) -> None:
    site.repo("alice", "secret", "git")
    private = _pool(site).get("/alice/secret/tree/main", status=303)
    missing = _pool(site).get("/alice/nothing/tree/main", status=303)
    assert private.location == BASE_URL + "/login?next=%2Falice%2Fsecret%2Ftree%2Fmain"
    assert missing.location == BASE_URL + "/login?next=%2Falice%2Fnothing%2Ftree%2Fmain"
    assert sorted(private.headers.keys()) == sorted(missing.headers.keys())
    assert private.body.replace(b"secret", b"nothing") == missing.body
    assert "WWW-Authenticate" not in private.headers


def test_settings_need_a_signed_in_user(site: Site) -> None:
    assert _pool(site).get("/settings/tokens?x=1", status=303).location.endswith("next=%2Fsettings%2Ftokens%3Fx%3D1")


@pytest.mark.parametrize("path", ["/alice/secret", "/alice/nothing"])
def test_a_signed_in_stranger_gets_the_same_not_found_page(site: Site, path: str) -> None:
    site.repo("alice", "secret", "git")
    page = _pool(site, "eve").get(path, status=404)
    assert page.content_type == "text/html" and "no such page" in page.text
    assert "WWW-Authenticate" not in page.headers and ">eve</a>" in page.text


def test_scripts_with_credentials_get_singlemalts_answers(site: Site) -> None:
    site.repo("alice", "secret", "git")
    site.accounts.add_user("bob", "password-bob")
    wrong = _pool(site).get("/alice/secret", headers=_basic("alice", "wrong"), status=401)
    assert wrong.headers["WWW-Authenticate"].startswith("Basic") and wrong.content_type == "text/plain"
    stranger = _pool(site).get("/alice/secret", headers=_basic("bob", "password-bob"), status=404)
    assert stranger.content_type == "text/plain"


def test_a_refused_form_post_is_a_page_with_the_reason(site: Site) -> None:
    page = _pool(site, "eve").post("/", status=404)
    assert page.content_type == "text/html"


def test_allowed_pages_pass_through_untouched(site: Site) -> None:
    site.repo("alice", "open", "git", public=True)
    assert _pool(site).get("/static/site.css").content_type == "text/css"
    assert _pool(site).get("/").status_int == 200


@pytest.mark.parametrize("host", ["evil.example", "example.test:1", "127.0.0.1:8443", ""])
def test_redirects_go_to_the_configured_base_url_whatever_the_host_header(site: Site, host: str) -> None:
    """An absolute URL built from ``Host`` would send a user (or a cache) wherever the client said."""
    site.repo("alice", "secret", "git")
    response = _pool(site).get("/alice/secret", headers={"Host": host}, extra_environ={"HTTP_HOST": host},
                               status=303)
    assert response.location == BASE_URL + "/login?next=%2Falice%2Fsecret"


def test_the_form_comes_back_to_the_page_exactly_as_asked(site: Site) -> None:
    site.repo("alice", "secret", "git")
    location = _pool(site).get("/alice/secret/blob/main/a%3Fb%20c%FF?x=1", status=303).location
    assert location == BASE_URL + "/login?next=%2Falice%2Fsecret%2Fblob%2Fmain%2Fa%253Fb%2520c%25FF%3Fx%3D1"
