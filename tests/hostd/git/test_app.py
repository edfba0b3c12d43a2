"""The git pool app under WebTest's lint: routes, refusals, and real protocol bytes.

``_app`` is the pool without git (``HOSTD_GIT_PACK=dulwich``): dulwich's
handlers of :mod:`hostd.git.fallback`. Pushes through git's receive-pack are
in ``test_receive.py``, fetches through git's upload-pack in ``test_upload.py``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from io import BytesIO

import pytest
import webtest
from dulwich.server import DictBackend
from dulwich.web import HTTPGitApplication

from hostd.git import fallback
from hostd.git.app import GitApp
from hostd.store.pushlog import PushLog
from tests.hostd.conftest import Site, age
from tests.hostd.git.pushes import (
    LIMIT,
    MAIN,
    OTHER,
    TOO_LARGE,
    ZERO,
    big_pack,
    child_commit,
    child_pack,
    disk,
    pkt,
    post_chunked,
    push_body,
    receive_pack,
)


def _app(site: Site) -> webtest.TestApp:
    return webtest.TestApp(site.decided(GitApp(site.storage, max_request_bytes=1 << 20), "git"))


def test_ref_advertisement(site: Site) -> None:
    site.repo("alice", "demo", "git")
    response = _app(site).get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert response.content_type == "application/x-git-upload-pack-advertisement"
    assert response.body.startswith(b"001e# service=git-upload-pack\n0000")
    assert b"refs/heads/main" in response.body


def test_push_ref_advertisement_is_dulwichs_and_built_once_per_ref_state(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = site.repo("alice", "demo", "git")
    git_dir = site.storage.path(ref, "git")
    age(git_dir)
    builds: list[object] = []
    real = fallback.receive_pack_advertisement
    monkeypatch.setattr(fallback, "receive_pack_advertisement", lambda *args: builds.append(args) or real(*args))
    app = _app(site)
    url = "/alice/demo.git/info/refs?service=git-receive-pack"
    first = app.get(url)
    dulwichs = webtest.TestApp(HTTPGitApplication(DictBackend({"/": disk(site, ref)}))).get(
        "/info/refs?service=git-receive-pack")
    assert (first.body, first.content_type) == (dulwichs.body, dulwichs.content_type)
    assert app.get(url).body == first.body
    assert len(builds) == 1

    head, child, pack = child_pack(disk(site, ref))
    receive_pack(app, [(head, child, MAIN)], pack)
    age(git_dir)
    assert child in app.get(url).body
    assert len(builds) == 2


def test_push_ref_advertisement_of_a_broken_repository_is_not_found(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    shutil.rmtree(site.storage.path(ref, "git") / "objects")
    response = _app(site).get("/alice/demo.git/info/refs?service=git-receive-pack", status=404)
    assert response.text == "Repository not found.\n"


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


def _upload_pack(app: webtest.TestApp, want: bytes, *, gzipped: bool = False) -> webtest.TestResponse:
    body = pkt(b"want %s side-band-64k thin-pack ofs-delta\n" % want) + b"0000" + pkt(b"done\n")
    return app.post(
        "/alice/demo.git/git-upload-pack",
        gzip.compress(body) if gzipped else body,
        content_type="application/x-git-upload-pack-request",
        headers={"Content-Encoding": "gzip"} if gzipped else {},
    )


def test_gzipped_upload_pack_request(site: Site) -> None:
    """git gzips upload-pack bodies over 1 KiB and says so in Content-Encoding."""
    ref = site.repo("alice", "demo", "git")
    response = _upload_pack(_app(site), disk(site, ref).refs[MAIN], gzipped=True)
    assert response.content_type == "application/x-git-upload-pack-result"
    assert pkt(b"NAK\n") in response.body
    assert b"PACK" in response.body


def test_fetch_of_a_tip_that_just_moved_on_is_served(site: Site) -> None:
    """The client read the refs, then a push moved main: git serves the old tip
    (it is reachable from the new one); dulwich answered HTTP 500."""
    ref = site.repo("alice", "demo", "git")
    repo = disk(site, ref)
    old = repo.refs[MAIN]
    child = child_commit(repo)
    repo.object_store.add_object(child)
    repo.refs[MAIN] = child.id
    response = _upload_pack(_app(site), old)
    assert pkt(b"NAK\n") in response.body
    assert b"PACK" in response.body


@pytest.mark.parametrize("dangling", [True, False], ids=["unreachable-commit", "missing-object"])
def test_fetch_of_what_no_ref_reaches_is_refused_in_gits_words(site: Site, dangling: bool) -> None:
    ref = site.repo("alice", "demo", "git")
    repo = disk(site, ref)
    stray = child_commit(repo, b"force-pushed away\n")
    if dangling:
        repo.object_store.add_object(stray)
    response = _upload_pack(_app(site), stray.id)
    assert response.status_int == 200
    assert response.body == pkt(b"ERR upload-pack: not our ref " + stray.id)



# --- request size limit -----------------------------------------------------

def test_gzipped_fetch_request_is_limited_after_decompression(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    want = disk(site, ref).refs[MAIN]
    lines = pkt(b"want %s side-band-64k thin-pack ofs-delta\n" % want) + b"0000"
    # Distinct haves, which gzip about 2:1: refused for their inflated size, not their ratio.
    lines += b"".join(pkt(b"have %s\n" % os.urandom(20).hex().encode()) for _ in range(LIMIT // 40))
    response = _app(site).post(
        "/alice/demo.git/git-upload-pack", gzip.compress(lines + pkt(b"done\n")),
        content_type="application/x-git-upload-pack-request", headers={"Content-Encoding": "gzip"}, status=413,
    )
    assert response.body == b"request is larger than the server's limit of 1 MiB.\n"


def test_repositories_opened_for_a_request_are_closed(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich never closes them: each request's packs stayed mapped until a garbage collection."""
    ref = site.repo("alice", "demo", "git")
    opened: list[fallback.DulwichRepository] = []
    closed: list[fallback.DulwichRepository] = []
    real_init, real_close = fallback.DulwichRepository.__init__, fallback.DulwichRepository.close

    def init(self: fallback.DulwichRepository, root: str) -> None:
        real_init(self, root)
        opened.append(self)

    def close(self: fallback.DulwichRepository) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(fallback.DulwichRepository, "__init__", init)
    monkeypatch.setattr(fallback.DulwichRepository, "close", close)
    app = _app(site)
    app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert b"PACK" in _upload_pack(app, disk(site, ref).refs[MAIN]).body
    head, child, pack = child_pack(disk(site, ref))
    receive_pack(app, [(head, child, MAIN)], pack)
    assert len(opened) >= 3
    assert sorted(map(id, closed)) == sorted(map(id, opened))


def test_a_large_push_is_followed_by_a_full_collection(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich leaves a received pack's buffers in reference cycles; without a
    collection a worker kept hundreds of MiB after a large push."""
    collections: list[int] = []
    monkeypatch.setattr(fallback.gc, "collect", lambda: collections.append(1) or 0)
    ref = site.repo("alice", "demo", "git")
    app = webtest.TestApp(site.decided(GitApp(site.storage, max_request_bytes=64 << 20), "git"))
    head, child, pack = child_pack(disk(site, ref))
    assert pkt(b"ok refs/heads/main\n") in receive_pack(app, [(head, child, MAIN)], pack)
    assert collections == []  # a small push: nothing to reclaim
    head, child, pack = big_pack(disk(site, ref), fallback.COLLECT_AFTER_BYTES + 1)
    assert pkt(b"ok refs/heads/main\n") in receive_pack(app, [(head, child, MAIN)], pack)
    assert collections == [1]



# --- pushes without git: dulwich's receive-pack --------------------------------


def test_push_without_git_lands_and_is_logged(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    pushlog = PushLog(site.accounts.db)
    app = webtest.TestApp(site.decided(GitApp(site.storage, max_request_bytes=LIMIT, pushlog=pushlog), "git"),
                          extra_environ={"REMOTE_USER": "alice"})
    head, child, pack = child_pack(disk(site, ref))
    assert pkt(b"ok refs/heads/other\n") in receive_pack(app, [(head, child, MAIN), (ZERO, child, OTHER)], pack)
    refs = disk(site, ref).refs
    assert (refs[MAIN], refs[OTHER]) == (child, child)
    logged = sorted((e.username, e.ref, e.old, e.new) for e in pushlog.entries(ref))
    assert logged == [("alice", "refs/heads/main", head.decode(), child.decode()),
                      ("alice", "refs/heads/other", ZERO.decode(), child.decode())]


def test_push_without_git_announcing_a_length_over_the_limit_is_reported_without_storing_it(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), LIMIT + LIMIT // 2)
    objects = site.storage.path(ref, "git") / "objects"
    before = sorted(objects.rglob("*"))
    report = receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert report == pkt(b"unpack " + TOO_LARGE + b"\n") + pkt(b"ng refs/heads/main unpacker error\n") + b"0000"
    assert sorted(objects.rglob("*")) == before


def test_chunked_push_without_git_over_the_limit_is_drained_and_reported(site: Site) -> None:
    """dulwich reports the reason as its unpack status; the client reads it once it has sent all."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), LIMIT + LIMIT // 2)
    body = BytesIO(push_body([(head, child, MAIN)], pack))
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                            "application/x-git-receive-pack-request")
    assert pkt(b"unpack " + TOO_LARGE + b"\n") in response.body
    assert body.tell() == len(body.getvalue()), "the rest of the body was not drained"
    assert disk(site, ref).refs[MAIN] == head
