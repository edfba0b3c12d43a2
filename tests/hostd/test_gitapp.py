"""The git pool app under WebTest's lint: routes, refusals, and real protocol bytes."""

from __future__ import annotations

import fcntl
import gzip
import os
from io import BytesIO

import pytest
import webtest
from dulwich.objects import Commit
from dulwich.pack import write_pack_objects
from dulwich.refs import Ref
from dulwich.repo import Repo as DulwichRepo

from hostd import gitapp
from hostd.gitapp import GitApp
from hostd.names import RepoName
from hostd.pushlog import PushLog
from tests.hostd.conftest import Site

ZERO = b"0" * 40
BOGUS = b"1" * 40
MAIN = Ref(b"refs/heads/main")
OTHER = Ref(b"refs/heads/other")


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


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def _disk(site: Site, ref: RepoName) -> DulwichRepo:
    return DulwichRepo(str(site.storage.path(ref, "git")))


def _child(repo: DulwichRepo, message: bytes = b"child\n") -> Commit:
    """A new commit on top of main (not yet stored anywhere)."""
    head = repo.refs[MAIN]
    child = Commit()
    child.tree = repo[head].tree  # type: ignore[attr-defined]
    child.parents = [head]
    child.author = child.committer = b"Test <test@example.com>"
    child.author_time = child.commit_time = 1700000000
    child.author_timezone = child.commit_timezone = 0
    child.message = message
    return child


def _child_pack(repo: DulwichRepo) -> tuple[bytes, bytes, bytes]:
    """(head, a new commit on top of it, a pack holding just that commit)."""
    child = _child(repo)
    pack = BytesIO()
    write_pack_objects(pack, [child], object_format=repo.object_format)
    return repo.refs[MAIN], child.id, pack.getvalue()


def _receive_pack(
    app: webtest.TestApp, commands: list[tuple[bytes, bytes, bytes]], pack: bytes = b"", caps: bytes = b"report-status"
) -> bytes:
    """POST a push (without side-band, so the report is plain pkt-lines)."""
    lines = [b"%s %s %s" % command for command in commands]
    lines[0] += b"\0" + caps
    body = b"".join(_pkt(line + b"\n") for line in lines) + b"0000" + pack
    response = app.post("/alice/demo.git/git-receive-pack", body, content_type="application/x-git-receive-pack-request")
    assert response.status_int == 200
    return response.body  # type: ignore[no-any-return]


def test_push_whose_old_value_is_stale_is_refused_and_the_others_land(site: Site) -> None:
    """dulwich answered "ok" when its compare-and-swap failed: a lost race was dropped silently."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    report = _receive_pack(_app(site), [(BOGUS, child, MAIN), (ZERO, child, b"refs/heads/other")], pack)
    assert _pkt(b"unpack ok\n") in report
    assert _pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert _pkt(b"ok refs/heads/other\n") in report
    refs = _disk(site, ref).refs
    assert (refs[MAIN], refs[OTHER]) == (head, child)


def test_delete_whose_old_value_is_stale_is_refused(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head = _disk(site, ref).refs[MAIN]
    report = _receive_pack(_app(site), [(BOGUS, ZERO, MAIN)], caps=b"report-status delete-refs")
    assert _pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert _disk(site, ref).refs[MAIN] == head


def test_atomic_push_with_one_stale_ref_moves_none(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    report = _receive_pack(
        _app(site), [(ZERO, child, b"refs/heads/other"), (BOGUS, child, MAIN)], pack, caps=b"report-status atomic"
    )
    assert _pkt(b"ng refs/heads/other atomic transaction failed\n") in report
    assert _pkt(b"ng refs/heads/main atomic transaction failed\n") in report
    refs = _disk(site, ref).refs
    assert refs[MAIN] == head and OTHER not in refs


def test_atomic_push_lands_every_ref(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    report = _receive_pack(
        _app(site), [(ZERO, head, b"refs/heads/old"), (head, child, MAIN)], pack, caps=b"report-status atomic"
    )
    assert _pkt(b"ok refs/heads/old\n") in report and _pkt(b"ok refs/heads/main\n") in report
    refs = _disk(site, ref).refs
    assert (refs[MAIN], refs[Ref(b"refs/heads/old")]) == (child, head)


def test_push_gives_up_cleanly_while_another_holds_the_ref_lock(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    monkeypatch.setattr(gitapp, "_REF_LOCK_SECONDS", 0.05)
    held = os.open(site.storage.path(ref, "git") / "refs", os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        report = _receive_pack(_app(site), [(head, child, MAIN)], pack)
    finally:
        os.close(held)
    assert _pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert _disk(site, ref).refs[MAIN] == head
    assert _pkt(b"ok refs/heads/main\n") in _receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert _disk(site, ref).refs[MAIN] == child


def test_leftover_ref_lock_file_is_a_refused_ref_not_a_broken_response(site: Site) -> None:
    """dulwich let FileLocked escape mid-response: the client saw an HTTP 500."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    (site.storage.path(ref, "git") / "refs" / "heads" / "main.lock").write_bytes(b"")
    report = _receive_pack(_app(site), [(head, child, MAIN), (ZERO, child, b"refs/heads/zz")], pack)
    assert _pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert _pkt(b"ng refs/heads/zz failed to update ref\n") in report
    assert _disk(site, ref).refs[MAIN] == head


def _upload_pack(app: webtest.TestApp, want: bytes, *, gzipped: bool = False) -> webtest.TestResponse:
    body = _pkt(b"want %s side-band-64k thin-pack ofs-delta\n" % want) + b"0000" + _pkt(b"done\n")
    return app.post(
        "/alice/demo.git/git-upload-pack",
        gzip.compress(body) if gzipped else body,
        content_type="application/x-git-upload-pack-request",
        headers={"Content-Encoding": "gzip"} if gzipped else {},
    )


def test_gzipped_upload_pack_request(site: Site) -> None:
    """git gzips upload-pack bodies over 1 KiB and says so in Content-Encoding."""
    ref = site.repo("alice", "demo", "git")
    response = _upload_pack(_app(site), _disk(site, ref).refs[MAIN], gzipped=True)
    assert response.content_type == "application/x-git-upload-pack-result"
    assert _pkt(b"NAK\n") in response.body
    assert b"PACK" in response.body


def test_fetch_of_a_tip_that_just_moved_on_is_served(site: Site) -> None:
    """The client read the refs, then a push moved main: git serves the old tip
    (it is reachable from the new one); dulwich answered HTTP 500."""
    ref = site.repo("alice", "demo", "git")
    repo = _disk(site, ref)
    old = repo.refs[MAIN]
    child = _child(repo)
    repo.object_store.add_object(child)
    repo.refs[MAIN] = child.id
    response = _upload_pack(_app(site), old)
    assert _pkt(b"NAK\n") in response.body
    assert b"PACK" in response.body


@pytest.mark.parametrize("dangling", [True, False], ids=["unreachable-commit", "missing-object"])
def test_fetch_of_what_no_ref_reaches_is_refused_in_gits_words(site: Site, dangling: bool) -> None:
    ref = site.repo("alice", "demo", "git")
    repo = _disk(site, ref)
    stray = _child(repo, b"force-pushed away\n")
    if dangling:
        repo.object_store.add_object(stray)
    response = _upload_pack(_app(site), stray.id)
    assert response.status_int == 200
    assert response.body == _pkt(b"ERR upload-pack: not our ref " + stray.id)



def test_landed_pushes_are_recorded_in_the_push_log(site: Site) -> None:
    """Only refs that actually moved are logged, with the pusher's name."""
    ref = site.repo("alice", "demo", "git")
    pushlog = PushLog(site.accounts.db)
    app = webtest.TestApp(
        GitApp(site.policy("git").resolve, site.storage, max_request_bytes=1 << 20, pushlog=pushlog),
        extra_environ={"REMOTE_USER": "alice"},
    )
    head, child, pack = _child_pack(_disk(site, ref))
    report = _receive_pack(app, [(BOGUS, child, MAIN), (ZERO, child, OTHER)], pack)
    assert _pkt(b"ok refs/heads/other\n") in report
    [entry] = pushlog.entries(ref)  # main lost its race: not logged
    assert (entry.username, entry.ref, entry.old, entry.new) == ("alice", "refs/heads/other", ZERO.decode(),
                                                                 child.decode())


def test_a_failing_push_log_does_not_fail_the_push(site: Site) -> None:
    class BrokenLog:
        def record(self, *args: object) -> None:
            raise OSError("disk full")

    ref = site.repo("alice", "demo", "git")
    app = webtest.TestApp(GitApp(site.policy("git").resolve, site.storage, max_request_bytes=1 << 20,
                                 pushlog=BrokenLog()))  # type: ignore[arg-type]
    head, child, pack = _child_pack(_disk(site, ref))
    assert _pkt(b"ok refs/heads/main\n") in _receive_pack(app, [(head, child, MAIN)], pack)
    assert _disk(site, ref).refs[MAIN] == child
