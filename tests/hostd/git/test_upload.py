"""git's own upload-pack behind the git app: protocol bytes, caches and refusals.

The caches are checked by what they must never do (serve an answer for a
state that has changed) as much as by what they save (a fork per request).
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
import webtest

from hostd.git.app import GitApp
from hostd.git.cache import PACK_CACHE_DIR, PackCache
from hostd.git.inflight import InFlight
from hostd.git.process import GitRun
from hostd.git.upload import UploadPack
from hostd.names import RepoName
from hostd.store.refstate import RACY_SECONDS, PerRefState, RefState
from tests.hostd.conftest import GIT, Site, age, run_git

REQUEST = "application/x-git-upload-pack-request"


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def _new_commit(git_dir: Path, message: str) -> str:
    tree = run_git(git_dir, "rev-parse", "main^{tree}")
    return run_git(git_dir, "commit-tree", tree, "-p", "main", "-m", message)


class Counting(UploadPack):
    """Counts the git processes started, to see what was served from a cache."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(GIT, *args, **kwargs)  # type: ignore[arg-type]
        self.runs = 0

    def _run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.runs += 1
        return super()._run(*args, **kwargs)

    def _start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.runs += 1
        return super()._start(*args, **kwargs)


@pytest.fixture
def served(site: Site) -> tuple[webtest.TestApp, Counting]:
    native = Counting()
    app = GitApp(site.storage, max_request_bytes=1 << 20, upload_pack=native)
    return webtest.TestApp(site.decided(app, "git")), native


def _clone_request(want: str, capabilities: bytes = b"side-band-64k ofs-delta") -> bytes:
    return _pkt(b"want %s %s\n" % (want.encode(), capabilities)) + b"0000" + _pkt(b"done\n")


def _post(app: webtest.TestApp, body: bytes, **kwargs: object) -> webtest.TestResponse:
    return app.post("/alice/demo.git/git-upload-pack", body, content_type=REQUEST, **kwargs)  # type: ignore[arg-type]


# --- the caches -------------------------------------------------------------------


def test_pack_cache_publishes_only_committed_responses(tmp_path: Path) -> None:
    cache = PackCache(keep=2)
    aborted = cache.writer(tmp_path, "k0")
    assert aborted is not None
    aborted.write(b"partial")
    aborted.abort()
    assert cache.open(tmp_path, "k0") is None
    for n in range(3):
        writer = cache.writer(tmp_path, f"k{n + 1}")
        assert writer is not None
        writer.write(b"response %d" % n)
        writer.commit()
        past = time.time() - 100 + n
        os.utime(tmp_path / PACK_CACHE_DIR / f"k{n + 1}", (past, past))
    assert sorted(os.listdir(tmp_path / PACK_CACHE_DIR)) == ["k2", "k3"]  # the oldest went
    handle = cache.open(tmp_path, "k3")
    assert handle is not None
    with handle:
        assert handle.read() == b"response 2"


def test_pack_cache_puts_a_response_on_disk_before_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", Path(name).name if Path(name).read_bytes() == b"whole response" else "incomplete"))
        fsync(fd)

    def recording_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        events.append(("replace", Path(target).name))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    writer = PackCache().writer(tmp_path, "k")
    assert writer is not None
    writer.write(b"whole response")
    writer.commit()
    assert [kind for kind, _ in events] == ["fsync", "replace"]
    assert events[0][1].startswith(".tmp-") and events[1] == ("replace", "k")


def test_pack_cache_names_nothing_it_could_not_put_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    writer = PackCache().writer(tmp_path, "k")
    assert writer is not None
    writer.write(b"whole response")
    open_before = len(os.listdir("/proc/self/fd"))
    writer.commit()
    assert os.listdir(tmp_path / PACK_CACHE_DIR) == []  # neither published nor left behind
    assert len(os.listdir("/proc/self/fd")) == open_before - 1  # and its file is closed


def test_pack_cache_survives_an_unwritable_repository(tmp_path: Path) -> None:
    (tmp_path / PACK_CACHE_DIR).write_text("not a directory")
    assert PackCache().writer(tmp_path, "k") is None


# --- the ref state ----------------------------------------------------------------


def test_fingerprint_moves_with_every_kind_of_ref_change(repo: tuple[RepoName, Path]) -> None:
    _, git_dir = repo
    state = RefState()
    seen = [state.fingerprint(git_dir)]
    assert state.fingerprint(git_dir) == seen[0]
    changes = [
        lambda: run_git(git_dir, "update-ref", "refs/heads/main", _new_commit(git_dir, "one")),  # loose ref rewritten
        lambda: run_git(git_dir, "update-ref", "refs/heads/topic/deep/x", "main"),  # new nested directories
        lambda: run_git(git_dir, "update-ref", "refs/heads/topic/deep/x", _new_commit(git_dir, "two")),
        lambda: run_git(git_dir, "pack-refs", "--all", "--prune"),  # into packed-refs
        lambda: run_git(git_dir, "update-ref", "-d", "refs/heads/topic/deep/x"),  # deleted from packed-refs
        lambda: run_git(git_dir, "symbolic-ref", "HEAD", "refs/heads/other"),
    ]
    for change in changes:
        change()
        age(git_dir)  # the same mtimes as before: only inodes and sizes tell
        seen.append(state.fingerprint(git_dir))
        assert seen[-1] != seen[-2]
        assert not seen[-1].racy()
    assert state.fingerprint(git_dir) == seen[-1]


def test_a_fresh_change_is_racy(repo: tuple[RepoName, Path]) -> None:
    _, git_dir = repo
    run_git(git_dir, "update-ref", "refs/heads/new", "main")
    fingerprint = RefState().fingerprint(git_dir)
    assert fingerprint.racy()
    assert not fingerprint.racy(now=time.time() + 2 * RACY_SECONDS)


def test_an_answer_computed_while_a_ref_moved_is_not_kept(repo: tuple[RepoName, Path]) -> None:
    _, git_dir = repo
    adverts = PerRefState()
    computed: list[bytes] = []

    def compute() -> bytes:
        if not computed:
            run_git(git_dir, "update-ref", "refs/heads/main", _new_commit(git_dir, "meanwhile"))
            age(git_dir)  # not racy: only the inode and size of the ref tell
        computed.append(b"answer %d" % len(computed))
        return computed[-1]

    assert adverts.get(git_dir, "what", compute) == b"answer 0"
    assert adverts.get(git_dir, "what", compute) == b"answer 1"
    assert adverts.get(git_dir, "what", compute) == b"answer 1"
    assert adverts.get(git_dir, "other", compute) == b"answer 2"
    assert len(computed) == 3


# --- served through the app -------------------------------------------------------


def test_ref_advertisement_is_gits_and_cached_per_ref_state(
        repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    _, git_dir = repo
    app, native = served
    first = app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert first.content_type == "application/x-git-upload-pack-advertisement"
    assert first.headers["Cache-Control"].startswith("no-cache")
    expected = subprocess.run(native._argv(git_dir, "--advertise-refs"), capture_output=True, check=True).stdout
    assert b" filter " in expected and b" allow-reachable-sha1-in-want " in expected  # partial clone
    assert first.body == b"001e# service=git-upload-pack\n0000" + expected
    assert app.get("/alice/demo.git/info/refs?service=git-upload-pack").body == first.body
    assert native.runs == 1

    moved = _new_commit(git_dir, "moved")
    run_git(git_dir, "update-ref", "refs/heads/main", moved)
    assert moved.encode() in app.get("/alice/demo.git/info/refs?service=git-upload-pack").body
    assert native.runs == 2
    # Just changed (racy): answered right, but not cached until the state is old.
    app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert native.runs == 3
    age(git_dir)
    app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    app.get("/alice/demo.git/info/refs?service=git-upload-pack")
    assert native.runs == 4


def test_protocol_v2_capabilities_and_head(
        repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    app, _ = served
    v2 = app.get("/alice/demo.git/info/refs?service=git-upload-pack", headers={"Git-Protocol": "version=2"})
    assert v2.body.startswith(_pkt(b"version 2\n"))  # no "# service" line in v2, as http-backend
    head = app.head("/alice/demo.git/info/refs?service=git-upload-pack")
    assert head.body == b""
    assert int(head.headers["Content-Length"]) > 0


def test_full_clone_is_cached_on_disk_per_ref_state(
        repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    _, git_dir = repo
    app, native = served
    head = run_git(git_dir, "rev-parse", "main")
    first = _post(app, _clone_request(head))
    assert first.content_type == "application/x-git-upload-pack-result"
    assert b"PACK" in first.body
    runs = native.runs  # the advertisement (for the ref state) and upload-pack
    assert len(os.listdir(git_dir / PACK_CACHE_DIR)) == 1
    second = _post(app, _clone_request(head))
    assert second.body == first.body
    assert second.headers["Content-Length"] == str(len(first.body))
    assert native.runs == runs

    # Another state is another key, even for the same request.
    run_git(git_dir, "update-ref", "refs/heads/other", head)
    age(git_dir)
    assert b"PACK" in _post(app, _clone_request(head)).body  # git's progress lines may differ
    assert native.runs > runs
    assert len(os.listdir(git_dir / PACK_CACHE_DIR)) == 2


def _v2_fetch(*lines: bytes) -> bytes:
    return _pkt(b"command=fetch\n") + b"0001" + b"".join(_pkt(line + b"\n") for line in lines) + b"0000"


def test_filtered_and_full_clones_are_cached_apart(repo: tuple[RepoName, Path],
                                                   served: tuple[webtest.TestApp, Counting]) -> None:
    _, git_dir = repo
    app, native = served
    head = run_git(git_dir, "rev-parse", "main").encode()
    v2 = {"Git-Protocol": "version=2"}
    requests = [_v2_fetch(b"want " + head, b"ofs-delta", *spec, b"done")
                for spec in ([], [b"filter blob:none"], [b"filter tree:0"])]
    answers = [_post(app, body, headers=v2).body for body in requests]
    assert len(set(answers)) == 3 and all(b"packfile" in answer for answer in answers)
    assert len(os.listdir(git_dir / PACK_CACHE_DIR)) == 3
    runs = native.runs
    assert [_post(app, body, headers=v2).body for body in reversed(requests)] == answers[::-1]
    assert native.runs == runs  # each from its own entry


def test_a_partial_clones_fetch_of_missing_objects_is_not_cached(
        repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    """What ``git checkout`` in a partial clone sends: wants of blobs, no haves. Particular to one client."""
    _, git_dir = repo
    app, native = served
    blob = run_git(git_dir, "rev-parse", "main:README.md").encode()
    body = _v2_fetch(b"want " + blob, b"ofs-delta", b"filter blob:none", b"done")
    first = _post(app, body, headers={"Git-Protocol": "version=2"})
    assert b"packfile" in first.body
    assert not (git_dir / PACK_CACHE_DIR).exists() or os.listdir(git_dir / PACK_CACHE_DIR) == []
    runs = native.runs
    _post(app, body, headers={"Git-Protocol": "version=2"})
    assert native.runs == runs + 1


def test_a_clone_being_copied_to_the_pack_cache_is_registered_in_flight(site: Site, repo: tuple[RepoName, Path],
                                                                        tmp_path: Path) -> None:
    """So that the temporary copy of a worker killed mid-clone is removed when it dies (see hostd.git.inflight)."""
    _, git_dir = repo
    registry = tmp_path / "run" / "inflight"
    native = UploadPack(GIT, inflight=InFlight(registry))
    app = site.decided(GitApp(site.storage, max_request_bytes=1 << 20, upload_pack=native), "git")
    body = _clone_request(run_git(git_dir, "rev-parse", "main"))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/alice/demo.git/git-upload-pack", "CONTENT_TYPE": REQUEST,
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    iterator = iter(app(environ, lambda *a: None))
    next(iterator)
    assert len(os.listdir(registry)) == 1
    assert [path.name[:5] for path in (git_dir / PACK_CACHE_DIR).iterdir()] == [".tmp-"]
    for _ in iterator:
        pass
    assert os.listdir(registry) == []
    assert [path.name[:5] for path in (git_dir / PACK_CACHE_DIR).iterdir()] != [".tmp-"]


def test_fetch_with_haves_is_not_cached(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    _, git_dir = repo
    app, _ = served
    old = run_git(git_dir, "rev-parse", "main")
    new = _new_commit(git_dir, "new")
    run_git(git_dir, "update-ref", "refs/heads/main", new)
    age(git_dir)
    body = (_pkt(b"want %s side-band-64k ofs-delta\n" % new.encode()) + b"0000"
            + _pkt(b"have %s\n" % old.encode()) + _pkt(b"done\n"))
    assert b"PACK" in _post(app, body).body
    assert not (git_dir / PACK_CACHE_DIR).exists() or os.listdir(git_dir / PACK_CACHE_DIR) == []


def test_a_clone_right_after_a_push_is_cached_by_the_refs_content(
        repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    """Within the racy second after a change the refs are read again for the key, not trusted by stat."""
    _, git_dir = repo
    app, native = served
    new = _new_commit(git_dir, "new")
    run_git(git_dir, "update-ref", "refs/heads/main", new)  # racy from now on
    first = _post(app, _clone_request(new))
    assert b"PACK" in first.body
    assert len(os.listdir(git_dir / PACK_CACHE_DIR)) == 1
    runs = native.runs
    age(git_dir)  # the same refs, no longer racy: the same key
    assert _post(app, _clone_request(new)).body == first.body
    assert native.runs == runs + 1  # the advertisement (now cached), no upload-pack


def test_ls_refs_is_cached_in_memory(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    app, native = served
    body = _pkt(b"command=ls-refs\n") + b"0001" + _pkt(b"symrefs\n") + b"0000"
    headers = {"Git-Protocol": "version=2"}
    first = _post(app, body, headers=headers)
    assert b"refs/heads/main" in first.body
    runs = native.runs
    assert _post(app, body, headers=headers).body == first.body
    assert native.runs == runs


@pytest.mark.parametrize("body", [b"", b"garbage", b"0009done\n"])
def test_malformed_requests_are_answered_400(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting],
                                             body: bytes) -> None:
    app, _ = served
    response = _post(app, body, status=400)
    assert b"not understood" in response.body


def test_unknown_want_is_refused_in_gits_words(repo: tuple[RepoName, Path],
                                                served: tuple[webtest.TestApp, Counting]) -> None:
    app, _ = served
    response = _post(app, _clone_request("1" * 40))
    assert b"ERR upload-pack: not our ref " + b"1" * 40 in response.body


def test_broken_repository_is_a_server_error(repo: tuple[RepoName, Path],
                                            served: tuple[webtest.TestApp, Counting]) -> None:
    _, git_dir = repo
    app, _ = served
    (git_dir / "HEAD").unlink()  # no longer a git repository at all
    app.get("/alice/demo.git/info/refs?service=git-upload-pack", status=500)


def test_oversized_chunked_request_is_refused(repo: tuple[RepoName, Path],
                                              served: tuple[webtest.TestApp, Counting]) -> None:
    app, _ = served
    body = _pkt(b"want " + b"a" * 40 + b"\n") * ((2 << 20) // 50)
    response = app.post("/alice/demo.git/git-upload-pack", body, content_type=REQUEST, status=413,
                        extra_environ={"CONTENT_LENGTH": ""})
    assert b"larger than the server's limit" in response.body


def test_a_client_that_goes_away_stops_git(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, git_dir = repo
    app, native = served
    started: list[subprocess.Popen[bytes]] = []
    real_start = native._start

    def start(git_dir: Path, protocol: str) -> GitRun:
        result: GitRun = real_start(git_dir, protocol)
        started.append(result.process)
        return result

    monkeypatch.setattr(native, "_start", start)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/alice/demo.git/git-upload-pack", "CONTENT_TYPE": REQUEST,
               "wsgi.input": io.BytesIO(body := _clone_request(run_git(git_dir, "rev-parse", "main"))),
               "CONTENT_LENGTH": str(len(body))}
    iterator = iter(app.app(environ, lambda *a: None))
    next(iterator)
    iterator.close()  # type: ignore[attr-defined]
    assert started and started[0].poll() is not None
    assert os.listdir(git_dir / PACK_CACHE_DIR) == []  # the temporary copy is gone too


def test_wrong_content_type_is_refused(repo: tuple[RepoName, Path], served: tuple[webtest.TestApp, Counting]) -> None:
    app, _ = served
    app.post("/alice/demo.git/git-upload-pack", b"0000", content_type="text/plain", status=403)

