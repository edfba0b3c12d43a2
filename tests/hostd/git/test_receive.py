"""Pushes through git's own receive-pack (hostd.git.receive), under WebTest's lint with the real git binary."""

from __future__ import annotations

import gzip
import shutil
import threading
from io import BytesIO

import pytest
import webtest
from dulwich.objects import ObjectID
from dulwich.refs import Ref

from hostd.git.app import GitApp
from hostd.git.body import BoundedBody
from hostd.git.pushwire import ReportReader, read_commands, refusal_report
from hostd.git.receive import ReceivePack
from hostd.store.pushlog import PushLog
from tests.hostd.conftest import Site
from tests.hostd.git.pushes import (
    BOGUS,
    LIMIT,
    MAIN,
    OTHER,
    TOO_LARGE,
    ZERO,
    big_pack,
    child_pack,
    disk,
    pkt,
    post_chunked,
    push_body,
    receive_pack,
    temp_files,
)

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="needs git")


def _app(site: Site, *, limit: int = LIMIT, pushlog: object = None, ref_lock_ms: int = 10_000,
         user: str = "") -> webtest.TestApp:
    assert GIT is not None
    app = GitApp(site.storage, max_request_bytes=limit,
                 pushlog=pushlog,  # type: ignore[arg-type]
                 receive_pack=ReceivePack(GIT, ref_lock_ms=ref_lock_ms))
    return webtest.TestApp(site.decided(app, "git"), extra_environ={"REMOTE_USER": user} if user else {})


def test_push_lands(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    report = receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert report == pkt(b"unpack ok\n") + pkt(b"ok refs/heads/main\n") + b"0000"
    assert disk(site, ref).refs[MAIN] == child
    assert temp_files(site, ref) == []


def test_push_whose_old_value_is_stale_is_refused_and_the_others_land(site: Site) -> None:
    """dulwich answered "ok" when its compare-and-swap failed: a lost race was dropped silently."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    report = receive_pack(_app(site), [(BOGUS, child, MAIN), (ZERO, child, b"refs/heads/other")], pack)
    assert pkt(b"unpack ok\n") in report
    assert pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert pkt(b"ok refs/heads/other\n") in report
    refs = disk(site, ref).refs
    assert (refs[MAIN], refs[OTHER]) == (head, child)


def test_delete_whose_old_value_is_stale_is_refused(site: Site) -> None:
    """git deletes without a check when the old value names no object ("allowing deletion of
    corrupt ref"), so the stale old value here is an object that exists but is not the tip."""
    ref = site.repo("alice", "demo", "git")
    repo = disk(site, ref)
    head = repo.refs[MAIN]
    repo.refs[OTHER] = head
    stale = repo[head].tree  # type: ignore[attr-defined]
    report = receive_pack(_app(site), [(stale, ZERO, OTHER)], caps=b"report-status delete-refs")
    assert pkt(b"ng refs/heads/other failed to update ref\n") in report
    assert disk(site, ref).refs[OTHER] == head


def test_atomic_push_with_one_stale_ref_moves_none(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    report = receive_pack(
        _app(site), [(ZERO, child, b"refs/heads/other"), (BOGUS, child, MAIN)], pack, caps=b"report-status atomic"
    )
    assert pkt(b"ng refs/heads/other atomic transaction failed\n") in report
    assert pkt(b"ng refs/heads/main atomic transaction failed\n") in report
    refs = disk(site, ref).refs
    assert refs[MAIN] == head and OTHER not in refs


def test_atomic_push_lands_every_ref(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    report = receive_pack(
        _app(site), [(ZERO, head, b"refs/heads/old"), (head, child, MAIN)], pack, caps=b"report-status atomic"
    )
    assert pkt(b"ok refs/heads/old\n") in report and pkt(b"ok refs/heads/main\n") in report
    refs = disk(site, ref).refs
    assert (refs[MAIN], refs[Ref(b"refs/heads/old")]) == (child, head)


def test_push_gives_up_cleanly_while_another_holds_the_ref_lock(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    lock = site.storage.path(ref, "git") / "refs" / "heads" / "main.lock"
    lock.write_bytes(b"")
    report = receive_pack(_app(site, ref_lock_ms=50), [(head, child, MAIN)], pack)
    assert pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert disk(site, ref).refs[MAIN] == head
    lock.unlink()
    assert pkt(b"ok refs/heads/main\n") in receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert disk(site, ref).refs[MAIN] == child


def test_push_waits_for_another_push_of_the_same_ref(site: Site) -> None:
    """Two pushes of one ref at once: the second waits for the first's lock (as the old
    flock did) instead of failing at once; here the lock goes once git is waiting for it."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    lock = site.storage.path(ref, "git") / "refs" / "heads" / "main.lock"
    lock.write_bytes(b"")
    release = threading.Timer(0.3, lock.unlink)
    release.start()
    try:
        report = receive_pack(_app(site, ref_lock_ms=60_000), [(head, child, MAIN)], pack)
    finally:
        release.join()
    assert pkt(b"ok refs/heads/main\n") in report
    assert disk(site, ref).refs[MAIN] == child


def test_leftover_ref_lock_file_is_a_refused_ref_not_a_broken_response(site: Site) -> None:
    """dulwich let FileLocked escape mid-response: the client saw an HTTP 500. git refuses
    that ref alone (without --atomic the other refs of the push still land)."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    (site.storage.path(ref, "git") / "refs" / "heads" / "main.lock").write_bytes(b"")
    report = receive_pack(_app(site, ref_lock_ms=50), [(head, child, MAIN), (ZERO, child, b"refs/heads/zz")], pack)
    assert pkt(b"ng refs/heads/main failed to update ref\n") in report
    assert pkt(b"ok refs/heads/zz\n") in report
    assert disk(site, ref).refs[MAIN] == head


def test_landed_pushes_are_recorded_in_the_push_log(site: Site) -> None:
    """Only refs that actually moved are logged, with the pusher's name."""
    ref = site.repo("alice", "demo", "git")
    pushlog = PushLog(site.accounts.db)
    app = _app(site, pushlog=pushlog, user="alice")
    head, child, pack = child_pack(disk(site, ref))
    report = receive_pack(app, [(BOGUS, child, MAIN), (ZERO, child, OTHER)], pack)
    assert pkt(b"ok refs/heads/other\n") in report
    [entry] = pushlog.entries(ref)  # main lost its race: not logged
    assert (entry.username, entry.ref, entry.old, entry.new) == ("alice", "refs/heads/other", ZERO.decode(),
                                                                 child.decode())


def test_a_failing_push_log_does_not_fail_the_push(site: Site) -> None:
    class BrokenLog:
        def record(self, *args: object) -> None:
            raise OSError("disk full")

    ref = site.repo("alice", "demo", "git")
    app = _app(site, pushlog=BrokenLog())
    head, child, pack = child_pack(disk(site, ref))
    assert pkt(b"ok refs/heads/main\n") in receive_pack(app, [(head, child, MAIN)], pack)
    assert disk(site, ref).refs[MAIN] == child


@pytest.mark.parametrize("size", [LIMIT + LIMIT // 2, 3 * LIMIT], ids=["within-drain-bound", "beyond-it"])
def test_push_announcing_a_length_over_the_limit_is_reported_without_storing_it(site: Site, size: int) -> None:
    """git sends a Content-Length for pushes within its http.postBuffer; it prints
    a 413 only as "HTTP 413" (and then "Everything up-to-date"), so the reason
    goes into the report, and none of the pack is written to disk."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), size)
    objects = site.storage.path(ref, "git") / "objects"
    before = sorted(objects.rglob("*"))
    report = receive_pack(_app(site), [(head, child, MAIN)], pack)
    assert report == pkt(b"unpack " + TOO_LARGE + b"\n") + pkt(b"ng refs/heads/main unpacker error\n") + b"0000"
    assert disk(site, ref).refs[MAIN] == head
    assert sorted(objects.rglob("*")) == before


def test_chunked_push_over_the_limit_is_reported_in_the_unpack_status(site: Site) -> None:
    """Past the limit the pack is no longer stored; the rest of the body is read
    and dropped so that the client, still uploading, gets to read the report."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), LIMIT + LIMIT // 2)
    body = BytesIO(push_body([(head, child, MAIN), (ZERO, child, OTHER)], pack))
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert response.status_int == 200
    assert response.body == (
        pkt(b"unpack " + TOO_LARGE + b"\n")
        + pkt(b"ng refs/heads/main unpacker error\n")
        + pkt(b"ng refs/heads/other unpacker error\n")
        + b"0000"
    )
    assert body.tell() == len(body.getvalue()), "the rest of the body was not drained"
    refs = disk(site, ref).refs
    assert refs[MAIN] == head and OTHER not in refs
    assert temp_files(site, ref) == []
    assert ObjectID(child) not in disk(site, ref).object_store


def test_chunked_push_under_the_limit_lands(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), LIMIT - LIMIT // 4)
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack",
                             BytesIO(push_body([(head, child, MAIN)], pack)),
                             "application/x-git-receive-pack-request")
    assert response.body == pkt(b"unpack ok\n") + pkt(b"ok refs/heads/main\n") + b"0000"
    assert disk(site, ref).refs[MAIN] == child


def test_push_far_over_the_limit_is_not_drained_forever(site: Site) -> None:
    """The rest of the body is read and dropped up to twice the limit in all;
    then the report goes out and the server closes the connection."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), 4 * LIMIT)
    body = BytesIO(push_body([(head, child, MAIN)], pack))
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert response.status_int == 200 and pkt(b"unpack " + TOO_LARGE + b"\n") in response.body
    assert 2 * LIMIT < body.tell() <= 2 * LIMIT + (1 << 16)
    assert disk(site, ref).refs[MAIN] == head
    assert temp_files(site, ref) == []


def test_body_over_the_limit_before_any_pack_is_a_413(site: Site) -> None:
    """Too large already in the ref commands: nothing has been answered yet, so
    the answer can still be an HTTP error with the reason."""
    ref = site.repo("alice", "demo", "git")
    head = disk(site, ref).refs[MAIN]
    commands = [(head, BOGUS, b"refs/heads/b%05d" % i) for i in range(LIMIT // 50)]
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack",
                             BytesIO(push_body(commands, b"")), "application/x-git-receive-pack-request")
    assert response.status_int == 413
    assert response.content_type == "text/plain"
    assert response.body == TOO_LARGE + b".\n"


def test_a_gzip_bomb_in_a_push_is_refused(site: Site) -> None:
    """git never gzips a push, but another client may: its ref commands inflate no further than a fetch's."""
    ref = site.repo("alice", "demo", "git")
    head = disk(site, ref).refs[MAIN]
    commands = [(head, BOGUS, MAIN)] * ((64 << 20) // 90)
    app = _app(site, limit=1 << 30)
    response = app.post("/alice/demo.git/git-receive-pack", gzip.compress(push_body(commands, b"")),
                        content_type="application/x-git-receive-pack-request", headers={"Content-Encoding": "gzip"},
                        status=413)
    assert b"the gzip-compressed request body inflates more than 50 times" in response.body
    assert disk(site, ref).refs[MAIN] == head


def test_a_push_in_another_content_coding_is_refused(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    response = _app(site).post("/alice/demo.git/git-receive-pack", push_body([(head, child, MAIN)], pack),
                               content_type="application/x-git-receive-pack-request",
                               headers={"Content-Encoding": "zstd"}, status=415)
    assert b"Only gzip" in response.body
    assert disk(site, ref).refs[MAIN] == head


def test_corrupt_pack_is_reported_and_leaves_no_temporary_file(site: Site) -> None:
    """git removes its quarantine (objects/tmp_objdir-incoming-*); dulwich left objects/tmp_pack_* behind."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), 100_000)
    corrupt = pack[:50_000] + bytes(b ^ 0xFF for b in pack[50_000:50_100]) + pack[50_100:]
    report = receive_pack(_app(site), [(head, child, MAIN)], corrupt)
    assert report[4:].startswith(b"unpack ") and not report.startswith(pkt(b"unpack ok\n"))
    assert report.endswith(pkt(b"ng refs/heads/main unpacker error\n") + b"0000")
    assert disk(site, ref).refs[MAIN] == head
    assert temp_files(site, ref) == []


def test_push_cut_off_midway_leaves_no_temporary_file(site: Site) -> None:
    """The client went away mid-pack: the body just ends early."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), 300_000)
    body = BytesIO(push_body([(head, child, MAIN)], pack[: len(pack) // 2]))
    response = post_chunked(_app(site), "/alice/demo.git/git-receive-pack", body,
                             "application/x-git-receive-pack-request")
    assert pkt(b"ng refs/heads/main unpacker error\n") in response.body
    assert disk(site, ref).refs[MAIN] == head
    assert temp_files(site, ref) == []




def test_gzipped_push_lands(site: Site) -> None:
    """git never gzips a push, but other clients may: the body is inflated on its way to git."""
    ref = site.repo("alice", "demo", "git")
    head, child, pack = child_pack(disk(site, ref))
    body = gzip.compress(push_body([(head, child, MAIN)], pack))
    response = _app(site).post("/alice/demo.git/git-receive-pack", body,
                               content_type="application/x-git-receive-pack-request",
                               headers={"Content-Encoding": "gzip"})
    assert pkt(b"ok refs/heads/main\n") in response.body
    assert disk(site, ref).refs[MAIN] == child


def test_push_log_reads_the_report_inside_side_band(site: Site) -> None:
    """git clients ask for side-band-64k: the report is then inside channel 1, passed through untouched."""
    ref = site.repo("alice", "demo", "git")
    pushlog = PushLog(site.accounts.db)
    head, child, pack = child_pack(disk(site, ref))
    body = push_body([(head, child, MAIN), (BOGUS, child, OTHER)], pack, caps=b"report-status side-band-64k quiet")
    response = _app(site, pushlog=pushlog, user="alice").post(
        "/alice/demo.git/git-receive-pack", body, content_type="application/x-git-receive-pack-request")
    report = ReportReader(sideband=True)
    report.feed(response.body)
    assert report.done and report.ok == [b"refs/heads/main"]
    assert [(e.username, e.ref, e.old, e.new) for e in pushlog.entries(ref)] == [
        ("alice", "refs/heads/main", head.decode(), child.decode())]


class _GoneMidway(BytesIO):
    """A body whose client goes away halfway, as gunicorn reports it: an exception from read()."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.cut = len(data) // 2

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.cut:
            raise OSError("client disconnected")
        return super().read(min(size if size is not None and size >= 0 else self.cut, self.cut - self.tell()))


def test_client_gone_midway_leaves_the_repository_as_it_was(site: Site) -> None:
    ref = site.repo("alice", "demo", "git")
    head, child, pack = big_pack(disk(site, ref), 300_000)
    before = sorted(path.name for path in (site.storage.path(ref, "git") / "objects").rglob("*"))
    gone = _GoneMidway(push_body([(head, child, MAIN)], pack))
    # Nobody reads the answer; git was given end-of-file and failed its unpack.
    post_chunked(_app(site), "/alice/demo.git/git-receive-pack", gone, "application/x-git-receive-pack-request")
    assert disk(site, ref).refs[MAIN] == head
    assert temp_files(site, ref) == []
    assert sorted(path.name for path in (site.storage.path(ref, "git") / "objects").rglob("*")) == before


# --- pushwire: the commands and the report, parsed as they pass -------------------


def test_read_commands_keeps_the_bytes_and_reads_no_further() -> None:
    commands = [(ZERO, b"a" * 40, b"refs/heads/new"), (b"b" * 40, ZERO, b"refs/heads/old")]
    data = push_body(commands, b"PACK...", caps=b"report-status side-band-64k")
    body = BoundedBody(BytesIO(data), 1 << 20, "too large")
    read = read_commands(body)
    assert read.raw == data[:-len(b"PACK...")]
    assert read.updates == tuple(commands)
    assert read.sideband and read.report_status
    assert body.read(100) == b"PACK..."


@pytest.mark.parametrize("data", [b"zzzz", b"0003", b"0010abc"], ids=["not-hex", "too-short", "cut-off"])
def test_read_commands_refuses_what_is_not_pkt_lines(data: bytes) -> None:
    with pytest.raises(Exception) as error:
        read_commands(BoundedBody(BytesIO(data), 1 << 20, "too large"))
    assert getattr(error.value, "status_int", None) == 400


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_report_reader_finds_the_ok_refs_however_the_stream_is_cut(step: int) -> None:
    inner = pkt(b"unpack ok\n") + pkt(b"ok refs/heads/a\n") + pkt(b"ng refs/heads/b failed to update ref\n")
    inner += pkt(b"ok refs/tags/v1\n") + b"0000"
    stream = pkt(b"\x02progress\n") + pkt(b"\x01" + inner[:20]) + pkt(b"\x01" + inner[20:]) + b"0000"
    reader = ReportReader(sideband=True)
    for i in range(0, len(stream), step):
        reader.feed(stream[i:i + step])
    assert reader.done and not reader.broken
    assert reader.ok == [b"refs/heads/a", b"refs/tags/v1"]


def test_refusal_report_is_side_band_wrapped_when_asked() -> None:
    body = BoundedBody(BytesIO(push_body([(ZERO, b"a" * 40, MAIN)], b"", caps=b"report-status side-band-64k")),
                       1 << 20, "x")
    report = refusal_report(read_commands(body), "push is larger than the server's limit of 1 MiB")
    reader = ReportReader(sideband=True)
    reader.feed(report)
    assert reader.done and reader.ok == []
    assert report[4:5] == b"\x01" and report.endswith(b"0000")


def test_the_probe_before_a_large_push_gets_an_empty_answer(site: Site) -> None:
    """git first POSTs a lone flush to a push larger than http.postBuffer; receive-pack answers nothing."""
    site.repo("alice", "demo", "git")
    response = _app(site).post("/alice/demo.git/git-receive-pack", b"0000",
                               content_type="application/x-git-receive-pack-request")
    assert (response.status_int, response.body) == (200, b"")
