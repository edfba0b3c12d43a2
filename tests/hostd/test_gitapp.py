"""The git pool app under WebTest's lint: routes, refusals, and real protocol bytes."""

from __future__ import annotations

import webtest

from hostd.gitapp import GitApp
from tests.hostd.conftest import Site


def _app(site: Site) -> webtest.TestApp:
    return webtest.TestApp(GitApp(site.policy("git").resolve, site.storage, max_request_bytes=1 << 20))


def test_ref_advertisement(site: Site) -> None:
    site.repo("alice", "demo", "git")
    response = _app(site).get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert response.content_type == "application/x-git-upload-pack-advertisement"
    assert response.body.startswith(b"001e# service=git-upload-pack\n0000")
    assert b"refs/heads/main" in response.body


def test_without_suffix_and_in_other_case(site: Site) -> None:
    site.repo("alice", "demo", "git")
    assert _app(site).get("/Alice/Demo/info/refs?service=git-upload-pack").status_int == 200


def test_dumb_protocol_is_refused(site: Site) -> None:
    site.repo("alice", "demo", "git")
    app = _app(site)
    for path in ("/alice/demo.git/info/refs", "/alice/demo.git/HEAD", "/alice/demo.git/objects/info/packs"):
        response = app.get(path, status=403)
        assert b"dumb HTTP protocol is not supported" in response.body


def test_upload_archive_is_refused(site: Site) -> None:
    site.repo("alice", "demo", "git")
    response = _app(site).post("/alice/demo.git/git-upload-archive", b"", status=403)
    assert b"not supported" in response.body


def test_unknown_repository_and_other_kind(site: Site) -> None:
    site.repo("alice", "hgrepo", "hg")
    app = _app(site)
    app.get("/alice/nothing.git/info/refs?service=git-upload-pack", status=404)
    app.get("/alice/hgrepo/info/refs?service=git-upload-pack", status=404)
    app.get("/alice/../etc/info/refs?service=git-upload-pack", status=404)


def test_service_endpoints_need_post_and_the_right_content_type(site: Site) -> None:
    site.repo("alice", "demo", "git")
    app = _app(site)
    app.get("/alice/demo.git/git-upload-pack", status=405)
    app.post("/alice/demo.git/git-upload-pack", b"0000", content_type="text/plain", status=403)
    app.post("/alice/demo.git/info/refs?service=git-upload-pack", b"", status=405)


def test_unknown_service_parameter(site: Site) -> None:
    site.repo("alice", "demo", "git")
    _app(site).get("/alice/demo.git/info/refs?service=git-upload-archive", status=403)
    _app(site).get("/alice/demo.git/info/refs?service=git-upload-pack&service=x", status=403)
