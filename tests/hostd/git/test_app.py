"""The git pool app under WebTest's lint: routes, refusals, and real protocol bytes."""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
from collections.abc import Sequence
from io import BytesIO

import pytest
import webtest
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.pack import Pack, write_pack_objects
from dulwich.refs import Ref
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import DictBackend
from dulwich.web import HTTPGitApplication

from hostd.git import app as gitapp
from hostd.git.app import GitApp
from hostd.names import RepoName
from hostd.store.pushlog import PushLog
from tests.hostd.conftest import Site, age

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


def test_push_ref_advertisement_is_dulwichs_and_built_once_per_ref_state(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = site.repo("alice", "demo", "git")
    git_dir = site.storage.path(ref, "git")
    age(git_dir)
    builds: list[object] = []
    real = gitapp.receive_pack_advertisement
    monkeypatch.setattr(gitapp, "receive_pack_advertisement", lambda *args: builds.append(args) or real(*args))
    app = _app(site)
    url = "/alice/demo.git/info/refs?service=git-receive-pack"
    first = app.get(url)
    dulwichs = webtest.TestApp(HTTPGitApplication(DictBackend({"/": _disk(site, ref)}))).get(
        "/info/refs?service=git-receive-pack")
    assert (first.body, first.content_type) == (dulwichs.body, dulwichs.content_type)
    assert app.get(url).body == first.body
    assert len(builds) == 1

    head, child, pack = _child_pack(_disk(site, ref))
    _receive_pack(app, [(head, child, MAIN)], pack)
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


# --- request size limit -----------------------------------------------------

LIMIT = 1 << 20
TOO_LARGE = b"push is larger than the server's limit of 1 MiB"


def _big_pack(repo: DulwichRepo, size: int) -> tuple[bytes, bytes, bytes]:
    """(head, a new commit, a pack of it with a random blob of ``size`` bytes)."""
    blob = Blob.from_string(os.urandom(size))
    tree = Tree()
    tree.add(b"big.bin", 0o100644, blob.id)
    child = _child(repo)
    child.tree = tree.id
    pack = BytesIO()
    write_pack_objects(pack, [blob, tree, child], object_format=repo.object_format)
    return repo.refs[MAIN], child.id, pack.getvalue()


def _push_body(commands: Sequence[tuple[bytes, bytes, bytes]], pack: bytes, caps: bytes = b"report-status") -> bytes:
    lines = [b"%s %s %s" % command for command in commands]
    lines[0] += b"\0" + caps
    return b"".join(_pkt(line + b"\n") for line in lines) + b"0000" + pack


def _post_chunked(app: webtest.TestApp, path: str, body: BytesIO, content_type: str,
                  **headers: str) -> webtest.TestResponse:
    """POST the way gunicorn hands over a chunked (or HTTP/2) body: no CONTENT_LENGTH."""
    request = webtest.TestRequest.blank(path, method="POST", content_type=content_type, headers=headers)
    request.environ.pop("CONTENT_LENGTH", None)
    request.environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    request.environ["wsgi.input"] = body
    return app.do_request(request, status="*")


def _temp_packs(site: Site, ref: RepoName) -> list[str]:
    objects = site.storage.path(ref, "git") / "objects"
    return sorted(path.name for pattern in ("tmp_pack_*", "pack/tmp*") for path in objects.glob(pattern))


@pytest.mark.parametrize("size", [LIMIT + LIMIT // 2, 3 * LIMIT], ids=["within-drain-bound", "beyond-it"])
def test_push_announcing_a_length_over_the_limit_is_reported_without_storing_it(site: Site, size: int) -> None:
    """git sends a Content-Length for pushes within its http.postBuffer; it prints
    a 413 only as "HTTP 413" (and then "Everything up-to-date"), so the reason
    goes into the report, and none of the pack is written to disk."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), size)
    objects = site.storage.path(ref, "git") / "objects"
    before = sorted(objects.rglob("*"))
    report = _receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert report == _pkt(b"unpack " + TOO_LARGE + b"\n") + _pkt(b"ng refs/heads/main unpacker error\n") + b"0000"
    assert _disk(site, ref).refs[MAIN] == head
    assert sorted(objects.rglob("*")) == before


def test_chunked_push_over_the_limit_is_reported_in_the_unpack_status(site: Site) -> None:
    """Past the limit the pack is no longer stored; the rest of the body is read
    and dropped so that the client, still uploading, gets to read the report."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), LIMIT + LIMIT // 2)
    body = BytesIO(_push_body([(head, child, MAIN), (ZERO, child, OTHER)], pack))
    response = _post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert response.status_int == 200
    assert response.body == (
        _pkt(b"unpack " + TOO_LARGE + b"\n")
        + _pkt(b"ng refs/heads/main unpacker error\n")
        + _pkt(b"ng refs/heads/other unpacker error\n")
        + b"0000"
    )
    assert body.tell() == len(body.getvalue()), "the rest of the body was not drained"
    refs = _disk(site, ref).refs
    assert refs[MAIN] == head and OTHER not in refs
    assert _temp_packs(site, ref) == []
    assert ObjectID(child) not in _disk(site, ref).object_store


def test_chunked_push_under_the_limit_lands(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), LIMIT - LIMIT // 4)
    response = _post_chunked(_app(site), "/alice/demo.git/git-receive-pack",
                             BytesIO(_push_body([(head, child, MAIN)], pack)),
                             "application/x-git-receive-pack-request")
    assert response.body == _pkt(b"unpack ok\n") + _pkt(b"ok refs/heads/main\n") + b"0000"
    assert _disk(site, ref).refs[MAIN] == child


def test_push_far_over_the_limit_is_not_drained_forever(site: Site) -> None:
    """The rest of the body is read and dropped up to twice the limit in all;
    then the report goes out and the server closes the connection."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), 4 * LIMIT)
    body = BytesIO(_push_body([(head, child, MAIN)], pack))
    response = _post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert response.status_int == 200 and _pkt(b"unpack " + TOO_LARGE + b"\n") in response.body
    assert 2 * LIMIT < body.tell() <= 2 * LIMIT + (1 << 16)
    assert _disk(site, ref).refs[MAIN] == head
    assert _temp_packs(site, ref) == []


def test_body_over_the_limit_before_any_pack_is_a_413(site: Site) -> None:
    """Too large already in the ref commands: nothing has been answered yet, so
    the answer can still be an HTTP error with the reason."""
    ref = site.repo("alice", "demo", "git")
    head = _disk(site, ref).refs[MAIN]
    commands = [(head, BOGUS, b"refs/heads/b%05d" % i) for i in range(LIMIT // 50)]
    response = _post_chunked(_app(site), "/alice/demo.git/git-receive-pack",
                             BytesIO(_push_body(commands, b"")), "application/x-git-receive-pack-request")
    assert response.status_int == 413
    assert response.content_type == "text/plain"
    assert response.body == TOO_LARGE + b".\n"


def test_gzipped_fetch_request_is_limited_after_decompression(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    want = _disk(site, ref).refs[MAIN]
    lines = _pkt(b"want %s side-band-64k thin-pack ofs-delta\n" % want) + b"0000"
    # Distinct haves, which gzip about 2:1: refused for their inflated size, not their ratio.
    lines += b"".join(_pkt(b"have %s\n" % os.urandom(20).hex().encode()) for _ in range(LIMIT // 40))
    response = _app(site).post(
        "/alice/demo.git/git-upload-pack", gzip.compress(lines + _pkt(b"done\n")),
        content_type="application/x-git-upload-pack-request", headers={"Content-Encoding": "gzip"}, status=413,
    )
    assert response.body == b"request is larger than the server's limit of 1 MiB.\n"


def test_a_gzip_bomb_in_a_push_is_refused(site: Site) -> None:
    """git never gzips a push, but another client may: its ref commands inflate no further than a fetch's."""
    ref = site.repo("alice", "demo", "git")
    head = _disk(site, ref).refs[MAIN]
    commands = [(head, BOGUS, MAIN)] * ((64 << 20) // 90)
    app = webtest.TestApp(GitApp(site.policy("git").resolve, site.storage, max_request_bytes=1 << 30))
    response = app.post("/alice/demo.git/git-receive-pack", gzip.compress(_push_body(commands, b"")),
                        content_type="application/x-git-receive-pack-request", headers={"Content-Encoding": "gzip"},
                        status=413)
    assert b"the gzip-compressed request body inflates more than 50 times" in response.body
    assert _disk(site, ref).refs[MAIN] == head


def test_a_push_in_another_content_coding_is_refused(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _child_pack(_disk(site, ref))
    response = _app(site).post("/alice/demo.git/git-receive-pack", _push_body([(head, child, MAIN)], pack),
                               content_type="application/x-git-receive-pack-request",
                               headers={"Content-Encoding": "zstd"}, status=415)
    assert b"Only gzip" in response.body
    assert _disk(site, ref).refs[MAIN] == head


def test_corrupt_pack_is_reported_and_leaves_no_temporary_file(site: Site) -> None:
    """dulwich left objects/tmp_pack_* behind on every failed push."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), 100_000)
    corrupt = pack[:50_000] + bytes(b ^ 0xFF for b in pack[50_000:50_100]) + pack[50_100:]
    report = _receive_pack(_app(site), [(head, child, MAIN)], corrupt)
    assert report[4:].startswith(b"unpack ") and not report.startswith(_pkt(b"unpack ok\n"))
    assert report.endswith(_pkt(b"ng refs/heads/main unpacker error\n") + b"0000")
    assert _disk(site, ref).refs[MAIN] == head
    assert _temp_packs(site, ref) == []


def test_push_cut_off_midway_leaves_no_temporary_file(site: Site) -> None:
    """The client went away mid-pack: the body just ends early."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = _big_pack(_disk(site, ref), 300_000)
    body = BytesIO(_push_body([(head, child, MAIN)], pack[: len(pack) // 2]))
    response = _post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert _pkt(b"ng refs/heads/main unpacker error\n") in response.body
    assert _disk(site, ref).refs[MAIN] == head
    assert _temp_packs(site, ref) == []


def test_repositories_opened_for_a_request_are_closed(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich never closes them: each request's packs stayed mapped until a garbage collection."""
    ref = site.repo("alice", "demo", "git")
    opened: list[gitapp._Repository] = []
    closed: list[gitapp._Repository] = []
    real_init, real_close = gitapp._Repository.__init__, gitapp._Repository.close

    def init(self: gitapp._Repository, root: str) -> None:
        real_init(self, root)
        opened.append(self)

    def close(self: gitapp._Repository) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(gitapp._Repository, "__init__", init)
    monkeypatch.setattr(gitapp._Repository, "close", close)
    app = _app(site)
    app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert b"PACK" in _upload_pack(app, _disk(site, ref).refs[MAIN]).body
    head, child, pack = _child_pack(_disk(site, ref))
    _receive_pack(app, [(head, child, MAIN)], pack)
    assert len(opened) >= 3
    assert sorted(map(id, closed)) == sorted(map(id, opened))


def test_a_large_push_is_followed_by_a_full_collection(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich leaves a received pack's buffers in reference cycles; without a
    collection a worker kept hundreds of MiB after a large push."""
    collections: list[int] = []
    monkeypatch.setattr(gitapp.gc, "collect", lambda: collections.append(1) or 0)
    ref = site.repo("alice", "demo", "git")
    app = webtest.TestApp(GitApp(site.policy("git").resolve, site.storage, max_request_bytes=64 << 20))
    head, child, pack = _child_pack(_disk(site, ref))
    assert _pkt(b"ok refs/heads/main\n") in _receive_pack(app, [(head, child, MAIN)], pack)
    assert collections == []  # a small push: nothing to reclaim
    head, child, pack = _big_pack(_disk(site, ref), gitapp._COLLECT_AFTER_BYTES + 1)
    assert _pkt(b"ok refs/heads/main\n") in _receive_pack(app, [(head, child, MAIN)], pack)
    assert collections == [1]


def test_pack_names_are_computed_once_per_index_file(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich names every existing pack (a read of its whole index) before storing a push."""
    ref = site.repo("alice", "demo", "git")
    repo = _disk(site, ref)
    head, child, pack = _child_pack(repo)
    assert _pkt(b"ok refs/heads/main\n") in _receive_pack(_app(site), [(head, child, MAIN)], pack)
    [existing] = _disk(site, ref).object_store.packs
    computed: list[bytes] = []
    real_name = Pack.name
    monkeypatch.setattr(Pack, "name", lambda self: computed.append(b"") or real_name(self))
    cache = gitapp._PackNameCache()
    assert cache.name(existing) == real_name(existing)
    assert cache.name(existing) == real_name(existing)
    assert len(computed) == 1  # the cache read the index once
    app = _app(site)
    for _ in range(2):
        head, child, pack = _child_pack(_disk(site, ref))
        assert _pkt(b"ok refs/heads/main\n") in _receive_pack(app, [(head, child, MAIN)], pack)
    assert _disk(site, ref).refs[MAIN] == child
