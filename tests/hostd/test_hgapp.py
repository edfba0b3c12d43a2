"""The hg pool app under WebTest: dispatch, and hgweb's second line of defence."""

from __future__ import annotations

from typing import Any

import webtest

from hostd.hgapp import HgApp
from singlemalt import Action, Target
from tests.hostd.conftest import Site


class DummyAuthorized:
    """Stands in for singlemalt: marks every request as authorized for ``action``."""

    def __init__(self, app: Any, action: Action | None) -> None:
        self.app = app
        self.action = action

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.action is not None:
            environ["singlemalt.target"] = Target(environ["PATH_INFO"].strip("/"), self.action, "test")
            environ["REMOTE_USER"] = "alice"
        return self.app(environ, start_response)


def _app(site: Site, action: Action | None) -> webtest.TestApp:
    app = HgApp(site.policy("hg").resolve, site.storage)
    return webtest.TestApp(DummyAuthorized(app, action), extra_environ={"wsgi.url_scheme": "https"})


def test_capabilities(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    response = _app(site, Action.READ).get("/alice/notes?cmd=capabilities")
    assert b"unbundle" in response.body


def test_unknown_repository_and_git_repository_are_not_found(site: Site) -> None:
    site.repo("alice", "code", "git")
    app = _app(site, Action.READ)
    app.get("/alice/nothing?cmd=capabilities", status=404)
    app.get("/alice/code?cmd=capabilities", status=404)
    app.get("/alice/notes/extra?cmd=capabilities", status=404)


def test_push_without_a_write_authorization_is_refused_by_hgweb(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    response = _app(site, Action.READ).post(
        "/alice/notes?cmd=unbundle&heads=" + "30" * 20, b"", content_type="application/mercurial-0.1",
        status=403,
    )
    assert b"push not authorized" in response.body


def test_request_that_bypassed_singlemalt_is_refused(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    _app(site, None).get("/alice/notes?cmd=capabilities", status=401)


def test_hgweb_instances_are_reused_until_the_repository_is_replaced(site: Site) -> None:
    ref = site.repo("alice", "notes", "hg")
    hg = HgApp(site.policy("hg").resolve, site.storage)
    first = hg._hgweb_for(site.storage.path(ref, "hg"))
    assert hg._hgweb_for(site.storage.path(ref, "hg")) is first
    site.storage.delete(ref, "hg")
    site.storage.create(ref, "hg")
    assert hg._hgweb_for(site.storage.path(ref, "hg")) is not first
