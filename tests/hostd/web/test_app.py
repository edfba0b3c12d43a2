"""The web pool's pages under WebTest (singlemalt stood in for by REMOTE_USER)."""

from __future__ import annotations

import pytest
import webtest

from hostd.names import RepoName
from hostd.store.shards import Shards
from hostd.web.app import WebApp, WebPolicy, classify_web
from singlemalt import Action, Allowed, Denied, Identity, Scope, Target
from tests.hostd.conftest import Site


def _app(site: Site, user: str | None = None) -> webtest.TestApp:
    app = WebApp(site.accounts, site.storage, "https://example.test")
    extra = {"REMOTE_USER": user} if user else {}
    return webtest.TestApp(site.decided(app, None), extra_environ=extra)


def test_index_lists_public_and_own_repositories(site: Site) -> None:
    site.repo("alice", "open", "git", public=True)
    site.repo("alice", "secret", "hg")
    site.repo("bob", "mine", "git")
    anonymous = _app(site).get("/")
    assert "alice/open" in anonymous.text and "alice/secret" not in anonymous.text
    assert "https://example.test/alice/open.git" in anonymous.text
    signed_in = _app(site, "bob").get("/")
    assert "Your repositories" in signed_in.text and "bob/mine" in signed_in.text
    assert "alice/secret" not in signed_in.text


@pytest.mark.parametrize("vcs", ["git", "hg"])
def test_repository_page_shows_clone_url_refs_and_commits(site: Site, vcs: str) -> None:
    site.repo("alice", "proj", vcs, public=True, readme="hello <b>")
    page = _app(site).get("/alice/proj")
    assert ("git clone" if vcs == "git" else "hg clone") in page.text
    assert "Initial commit" in page.text
    assert ("main" if vcs == "git" else "default") in page.text


def test_unknown_page_is_not_found(site: Site) -> None:
    site.repo("alice", "proj", "git", public=True)
    _app(site).get("/alice/nothing", status=404)
    _app(site).get("/a/b/c", status=404)
    _app(site).get("/alice/proj/commits", status=404)


def test_the_page_shows_the_repository_the_decision_carries(site: Site) -> None:
    """The row singlemalt's policy read is the one shown: the app does not look it up again."""
    site.repo("alice", "proj", "git", public=True)
    app = webtest.TestApp(WebApp(site.accounts, site.storage, "https://example.test"))
    # No decision (no singlemalt in front): nothing is served.
    app.get("/alice/proj", status=404)
    carried = site.policy(None).resolve("alice/proj")
    assert carried is not None
    page = app.get("/alice/proj", extra_environ={"singlemalt.decision": Allowed("test", resource=carried)})
    assert "git clone https://example.test/alice/proj.git" in page.text


@pytest.mark.parametrize("vcs", ["git", "hg"])
def test_registered_repository_without_a_directory_is_not_found(
    site: Site, vcs: str, caplog: pytest.LogCaptureFixture
) -> None:
    ref = site.repo("alice", "gone", vcs, public=True)
    site.storage.delete(ref, vcs)
    assert "No such page" in _app(site).get("/alice/gone", status=404).text
    assert "alice/gone is registered but" in caplog.text


@pytest.mark.parametrize("vcs", ["git", "hg"])
def test_a_repository_on_another_shard_shows_what_the_database_knows(site: Site, vcs: str) -> None:
    """A web host of its own holds no repositories: the page still says what and where, never 404 or 500."""
    Shards(site.accounts.db).add("s2")
    site.accounts.add_user("alice", "password-alice")
    ref = RepoName("alice", "far")
    site.accounts.add_repo(ref, vcs, True, shard="s2")
    page = _app(site).get("/alice/far")
    assert f"{vcs} clone https://example.test/alice/far" in page.text
    assert "Stored on storage shard s2" in page.text and "Recent commits" not in page.text
    # The host of that shard shows the history (here: the directory is back).
    site.storage.create(ref, vcs, readme="hi")
    app = webtest.TestApp(site.decided(WebApp(site.accounts, site.storage, "https://example.test", "s2"), None))
    assert "Recent commits" in app.get("/alice/far").text


def test_login_redirects_home(site: Site) -> None:
    assert _app(site, "bob").get("/login", status=303).location.endswith("/")


@pytest.mark.parametrize("host", ["evil.example", "example.test:1", "127.0.0.1:8443", ""])
def test_redirects_go_to_the_configured_base_url_whatever_the_host_header(site: Site, host: str) -> None:
    """An absolute URL built from ``Host`` would send a user (or a cache) wherever the client said."""
    response = _app(site, "bob").get("/login", headers={"Host": host}, extra_environ={"HTTP_HOST": host},
                                     status=303)
    assert response.location == "https://example.test/"


WEB_CASES = [
    ("GET", "/", Target("", Action.READ, "web:GET")),
    ("GET", "/login", Target("", Action.READ, "web:login")),
    ("GET", "/alice/proj", Target("alice/proj", Action.READ, "web:GET")),
    ("GET", "/alice/proj/commits", Target("alice/proj", Action.READ, "web:GET")),
    ("POST", "/alice/proj", Target("alice/proj", Action.WRITE, "web:POST")),
    ("DELETE", "/", Target("", Action.WRITE, "web:DELETE")),
]


@pytest.mark.parametrize(("method", "path", "expected"), WEB_CASES, ids=[f"{m} {p}" for m, p, _ in WEB_CASES])
def test_classify_web(method: str, path: str, expected: Target) -> None:
    assert classify_web({"REQUEST_METHOD": method, "PATH_INFO": path}) == expected


def test_web_policy(site: Site) -> None:
    site.repo("alice", "secret", "git")
    policy = WebPolicy(site.policy(None))
    alice = Identity("alice", "password", Scope.WRITE)
    assert isinstance(policy(None, Target("", Action.READ, "web:GET")), Allowed)
    assert isinstance(policy(None, Target("", Action.READ, "web:login")), Denied)
    assert isinstance(policy(alice, Target("", Action.READ, "web:login")), Allowed)
    assert isinstance(policy(None, Target("", Action.WRITE, "web:POST")), Denied)
    assert isinstance(policy(alice, Target("alice/secret", Action.READ, "web:GET")), Allowed)
    denied = policy(Identity("eve", "password", Scope.WRITE), Target("alice/secret", Action.READ, "web:GET"))
    assert isinstance(denied, Denied) and not denied.reveal
