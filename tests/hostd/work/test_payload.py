"""The push webhook's body, built from real git and hg repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mercurial import context, encoding, hg, localrepo
from mercurial import ui as uimod
from mercurial.node import hex as hexnode
from mercurial.node import nullid

from hostd.work.payload import MAX_COMMITS, ZERO, push_payload

GIT = shutil.which("git") or "git"
BASE_URL = "https://git.example.com"
MISSING = "1234567890abcdef1234567890abcdef12345678"
AT = 1796403662.5  # 2026-12-04T17:01:02Z


class GitRepo:
    """A bare repository whose commits are written with plumbing: no work tree, a few ms each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent),
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_COMMITTER_NAME": "Committer",
                    "GIT_COMMITTER_EMAIL": "committer@example.com", "GIT_COMMITTER_DATE": "1700000000 +0000"}
        subprocess.run([GIT, "init", "-q", "--bare", "--initial-branch=main", str(path)], env=self.env, check=True)
        self.tree = self.git("hash-object", "-t", "tree", "-w", "--stdin")

    def git(self, *args: str, stdin: bytes = b"") -> str:
        result = subprocess.run([GIT, f"--git-dir={self.path}", *args], env=self.env, input=stdin,
                                capture_output=True, check=True)
        return result.stdout.decode().strip()

    def commit(self, message: str | bytes, *parents: str, author: str = "Alice <alice@example.com>",
               date: str = "1700000000 +0000") -> str:
        name, _, email = author.partition(" <")
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_AUTHOR_DATE": date}
        self.env.update(env)
        raw = message if isinstance(message, bytes) else message.encode()
        return self.git("commit-tree", self.tree, *(a for p in parents for a in ("-p", p)), stdin=raw)

    def chain(self, parent: str, count: int, label: str) -> list[str]:
        """``count`` commits on top of ``parent``, oldest first."""
        ids = []
        for number in range(1, count + 1):
            parent = self.commit(f"{label} {number}\n", parent)
            ids.append(parent)
        return ids

    def set(self, ref: str, target: str) -> None:
        self.git("update-ref", ref, target)

    def payload(self, *updates: tuple[str, str, str]) -> dict[str, Any]:
        return push_payload(vcs="git", repo_dir=self.path, owner="alice", name="tools", pusher="bob", at=AT,
                            updates=list(updates), base_url=BASE_URL)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "tools.git")


@pytest.fixture
def base(repo: GitRepo) -> str:
    """main with two commits: what was there before each push."""
    first = repo.commit("initial\n")
    second = repo.commit("second\n", first)
    repo.set("refs/heads/main", second)
    return second


def ids(payload: dict[str, Any]) -> list[str]:
    return [c["id"] for c in payload["commits"]]


def refs_of(payload: dict[str, Any]) -> list[str]:
    return [c["ref"] for c in payload["commits"]]


def test_git_fast_forward_of_three_commits(repo: GitRepo, base: str) -> None:
    c1 = repo.commit("one\n", base)
    c2 = repo.commit("two\n", c1, author="Bob <bob@example.com>")
    message = "Zoë's fix: naïve → 日本\n\nA body\nover two lines.\n"
    c3 = repo.commit(message, c2, author="Zoë Ünal <zoe@example.com>", date="1700000000 +0130")
    repo.set("refs/heads/main", c3)
    payload = repo.payload(("refs/heads/main", base, c3))
    assert payload == {
        "event": "push",
        "repository": {"owner": "alice", "name": "tools", "full_name": "alice/tools", "vcs": "git",
                       "html_url": f"{BASE_URL}/alice/tools", "clone_url": f"{BASE_URL}/alice/tools"},
        "pusher": {"username": "bob"},
        "pushed_at": "2026-12-04T17:01:02Z",
        "refs": [{"ref": "refs/heads/main", "before": base, "after": c3, "created": False, "deleted": False}],
        "commits": [
            {"id": c3, "ref": "refs/heads/main", "author": {"name": "Zoë Ünal", "email": "zoe@example.com"},
             "timestamp": "2023-11-14T23:43:20+01:30", "message": message.rstrip("\n"),
             "url": f"{BASE_URL}/alice/tools/commit/{c3}"},
            {"id": c2, "ref": "refs/heads/main", "author": {"name": "Bob", "email": "bob@example.com"},
             "timestamp": "2023-11-14T22:13:20+00:00", "message": "two",
             "url": f"{BASE_URL}/alice/tools/commit/{c2}"},
            {"id": c1, "ref": "refs/heads/main", "author": {"name": "Alice", "email": "alice@example.com"},
             "timestamp": "2023-11-14T22:13:20+00:00", "message": "one",
             "url": f"{BASE_URL}/alice/tools/commit/{c1}"},
        ],
        "total_commits": 3,
        "commits_truncated": False,
    }
    assert json.loads(json.dumps(payload)) == payload


def test_git_first_push_to_an_empty_repository_lists_everything(repo: GitRepo) -> None:
    """HEAD names refs/heads/main: it must not count as another ref that already had the commits."""
    c1 = repo.commit("one\n")
    c2 = repo.commit("two\n", c1)
    repo.set("refs/heads/main", c2)
    payload = repo.payload(("refs/heads/main", ZERO, c2))
    assert ids(payload) == [c2, c1]
    assert payload["refs"][0]["created"] is True
    assert payload["total_commits"] == 2


def test_git_created_branch_lists_only_its_new_commits(repo: GitRepo, base: str) -> None:
    f1, f2 = repo.chain(base, 2, "feature")
    repo.set("refs/heads/feature", f2)
    payload = repo.payload(("refs/heads/feature", ZERO, f2))
    assert ids(payload) == [f2, f1]
    assert refs_of(payload) == ["refs/heads/feature"] * 2
    assert payload["total_commits"] == 2


def test_git_branch_created_at_an_existing_commit_brings_none(repo: GitRepo, base: str) -> None:
    repo.set("refs/heads/copy", base)
    payload = repo.payload(("refs/heads/copy", ZERO, base))
    assert payload["commits"] == [] and payload["total_commits"] == 0 and payload["commits_truncated"] is False
    assert payload["refs"] == [{"ref": "refs/heads/copy", "before": ZERO, "after": base,
                                "created": True, "deleted": False}]


def test_git_deleted_ref(repo: GitRepo, base: str) -> None:
    (f1,) = repo.chain(base, 1, "gone")  # on no ref any more: the branch was deleted
    payload = repo.payload(("refs/heads/feature", f1, ZERO))
    assert payload["commits"] == [] and payload["total_commits"] == 0
    assert payload["refs"][0]["deleted"] is True and payload["refs"][0]["created"] is False


def test_git_push_of_thirty_commits_lists_the_newest_twenty(repo: GitRepo, base: str) -> None:
    chain = repo.chain(base, 30, "bulk")
    repo.set("refs/heads/main", chain[-1])
    payload = repo.payload(("refs/heads/main", base, chain[-1]))
    assert ids(payload) == chain[::-1][:MAX_COMMITS]
    assert payload["total_commits"] == 30 and payload["commits_truncated"] is True


def test_git_two_refs_moved_to_the_same_commits_list_them_once(repo: GitRepo, base: str) -> None:
    chain = repo.chain(base, 3, "shared")
    repo.set("refs/heads/main", chain[-1])
    repo.set("refs/heads/release", chain[-1])
    payload = repo.payload(("refs/heads/release", base, chain[-1]), ("refs/heads/main", base, chain[-1]))
    assert ids(payload) == chain[::-1]
    assert refs_of(payload) == ["refs/heads/release"] * 3
    assert payload["total_commits"] == 3


def test_git_two_refs_created_at_the_same_new_commits(repo: GitRepo, base: str) -> None:
    """Each created ref ignores every ref of the push, not just itself, or neither would list them."""
    chain = repo.chain(base, 2, "twin")
    repo.set("refs/heads/a", chain[-1])
    repo.set("refs/heads/b", chain[-1])
    payload = repo.payload(("refs/heads/a", ZERO, chain[-1]), ("refs/heads/b", ZERO, chain[-1]))
    assert ids(payload) == chain[::-1] and refs_of(payload) == ["refs/heads/a"] * 2
    assert payload["total_commits"] == 2


def test_git_big_overlapping_refs_are_counted_once(repo: GitRepo, base: str) -> None:
    """Past one listing the count comes from rev-list, minus what earlier refs reach."""
    chain = repo.chain(base, 30, "big")
    repo.set("refs/heads/a", chain[1])
    repo.set("refs/heads/b", chain[-1])
    repo.set("refs/heads/c", chain[-1])
    payload = repo.payload(("refs/heads/a", base, chain[1]), ("refs/heads/b", base, chain[-1]),
                           ("refs/heads/c", ZERO, chain[-1]))
    assert ids(payload) == [chain[1], chain[0]] + chain[::-1][: MAX_COMMITS - 2]
    assert refs_of(payload) == ["refs/heads/a"] * 2 + ["refs/heads/b"] * (MAX_COMMITS - 2)
    assert payload["total_commits"] == 30 and payload["commits_truncated"] is True


def test_git_annotated_tags_are_peeled(repo: GitRepo, base: str) -> None:
    tagged = repo.commit("release only\n", base)  # reachable from the tag alone
    repo.git("tag", "-a", "-m", "v1", "v1", tagged)
    repo.git("tag", "-a", "-m", "a tree", "vtree", repo.tree)
    tag = repo.git("rev-parse", "refs/tags/v1")
    tree_tag = repo.git("rev-parse", "refs/tags/vtree")
    assert tag != tagged
    payload = repo.payload(("refs/tags/v1", ZERO, tag), ("refs/tags/vtree", ZERO, tree_tag))
    assert ids(payload) == [tagged] and refs_of(payload) == ["refs/tags/v1"]
    assert [r["after"] for r in payload["refs"]] == [tag, tree_tag]


def test_git_ids_not_in_the_repository_bring_nothing(repo: GitRepo, base: str) -> None:
    (c1,) = repo.chain(base, 1, "real")
    repo.set("refs/heads/main", c1)
    payload = repo.payload(("refs/heads/gone", ZERO, MISSING), ("refs/heads/raced", MISSING, c1),
                           ("refs/heads/main", base, c1))
    assert ids(payload) == [c1] and refs_of(payload) == ["refs/heads/main"]
    assert len(payload["refs"]) == 3 and payload["total_commits"] == 1


def test_git_message_with_invalid_utf8(repo: GitRepo, base: str) -> None:
    # Written as a raw object: commit-tree would re-encode the message as Latin-1.
    raw = (f"tree {repo.tree}\nparent {base}\nauthor Alice <alice@example.com> 1700000000 +0000\n"
           f"committer Alice <alice@example.com> 1700000000 +0000\n\n").encode() + b"caf\xe9 \xff\xfe ok \xc3\xa9\n"
    bad = repo.git("hash-object", "-t", "commit", "-w", "--stdin", stdin=raw)
    repo.set("refs/heads/main", bad)
    (commit,) = repo.payload(("refs/heads/main", base, bad))["commits"]
    assert commit["message"] == "caf\ufffd \ufffd\ufffd ok é"


def test_git_ref_that_looks_like_an_option(repo: GitRepo, base: str) -> None:
    (c1,) = repo.chain(base, 1, "dash")
    repo.set("refs/heads/--all", c1)
    payload = repo.payload(("refs/heads/--all", ZERO, c1))
    assert ids(payload) == [c1]


@pytest.mark.parametrize(("vcs", "update"), [
    pytest.param("git", ("refs/heads/main", ZERO, "abc"), id="short-id"),
    pytest.param("git", ("refs/heads/main", ZERO, MISSING.upper()), id="upper-case-id"),
    pytest.param("git", ("refs/heads/main", "--all" + "0" * 35, MISSING), id="option-as-id"),
    pytest.param("git", ("--all", ZERO, MISSING), id="option-as-ref"),
    pytest.param("git", ("refs/heads/a*", ZERO, MISSING), id="glob-in-ref"),
    pytest.param("git", ("refs/heads/a..b", ZERO, MISSING), id="dots-in-ref"),
    pytest.param("git", ("branch:default", ZERO, MISSING), id="hg-ref-for-git"),
    pytest.param("hg", ("refs/heads/main", ZERO, MISSING), id="git-ref-for-hg"),
    pytest.param("hg", ("default", ZERO, MISSING), id="bare-hg-name"),
    pytest.param("svn", ("refs/heads/main", ZERO, MISSING), id="unknown-vcs"),
])
def test_malformed_updates_are_refused(tmp_path: Path, vcs: str, update: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        push_payload(vcs=vcs, repo_dir=tmp_path, owner="a", name="b", pusher="c", at=0.0,
                     updates=[update], base_url=BASE_URL)


# hg: one repository, built once through Mercurial's API (a few ms a changeset):
#
#   r0 - r1 - r2 - r3 - r4 - r7          default
#                         \- r5 - r6     stable (r6 is its head)
#    \- b1 ... b25                       big
HgNodes = dict[str, str]


def _build_hg(path: Path) -> HgNodes:
    repo = hg.repository(uimod.ui(), os.fsencode(path), create=True)
    nodes: HgNodes = {}

    def commit(label: str, parent: str | None, message: str, *, user: str = "Alice <alice@example.com>",
               date: tuple[int, int] = (1700000000, 0), branch: str = "default") -> None:
        def content(repo: Any, ctx: Any, path: bytes) -> Any:
            return context.memfilectx(repo, ctx, path, label.encode())

        parents = (bytes.fromhex(nodes[parent]) if parent else nullid, nullid)
        with repo.wlock(), repo.lock(), repo.transaction(b"test"):
            ctx = context.memctx(repo, parents, message.encode(), [b"f"], content, user=user.encode(),
                                 date=date, extra={b"branch": branch.encode()})
            nodes[label] = hexnode(repo.commitctx(ctx)).decode()

    commit("r0", None, "initial")
    commit("r1", "r0", "one")
    commit("r2", "r1", "Bob's change\n\nnaïve → 日本", user="Bob", date=(1700000000, -3600))
    commit("r3", "r2", "three")
    commit("r4", "r3", "four")
    commit("r5", "r4", "stable one", branch="stable")
    commit("r6", "r5", "stable two", branch="stable")
    commit("r7", "r4", "seven")
    parent = "r0"
    for number in range(1, 26):
        commit(f"b{number}", parent, f"big {number}", branch="big")
        parent = f"b{number}"
    return nodes


@pytest.fixture(scope="module")
def hg_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, HgNodes]]:
    path = tmp_path_factory.mktemp("hg") / "tools"
    saved = encoding.encoding
    encoding.encoding = b"utf-8"  # what the descriptions are written in, whatever this process's locale
    try:
        nodes = _build_hg(path)
    finally:
        encoding.encoding = saved
    yield path, nodes


def hg_payload(hg_repo: tuple[Path, HgNodes], *updates: tuple[str, str, str]) -> dict[str, Any]:
    path, nodes = hg_repo
    named = [(ref, nodes.get(old, old), nodes.get(new, new)) for ref, old, new in updates]
    return push_payload(vcs="hg", repo_dir=path, owner="alice", name="tools", pusher="bob", at=AT,
                        updates=named, base_url=BASE_URL)


def test_hg_push_on_default(hg_repo: tuple[Path, HgNodes]) -> None:
    nodes = hg_repo[1]
    payload = hg_payload(hg_repo, ("branch:default", "r1", "r4"))
    assert ids(payload) == [nodes["r4"], nodes["r3"], nodes["r2"]]
    assert payload["repository"]["vcs"] == "hg" and payload["total_commits"] == 3
    bob = payload["commits"][2]
    assert bob == {"id": nodes["r2"], "ref": "branch:default", "author": {"name": "Bob", "email": ""},
                   "timestamp": "2023-11-14T23:13:20+01:00", "message": "Bob's change\n\nnaïve → 日本",
                   "url": f"{BASE_URL}/alice/tools/commit/{nodes['r2']}"}
    assert payload["commits"][0]["author"] == {"name": "Alice", "email": "alice@example.com"}
    assert payload["commits"][0]["timestamp"] == "2023-11-14T22:13:20+00:00"
    assert payload["refs"] == [{"ref": "branch:default", "before": nodes["r1"], "after": nodes["r4"],
                                "created": False, "deleted": False}]


def test_hg_new_named_branch_lists_only_its_changesets(hg_repo: tuple[Path, HgNodes]) -> None:
    nodes = hg_repo[1]
    payload = hg_payload(hg_repo, ("branch:stable", ZERO, "r6"))
    assert ids(payload) == [nodes["r6"], nodes["r5"]] and payload["total_commits"] == 2


def test_hg_bookmark_move(hg_repo: tuple[Path, HgNodes]) -> None:
    nodes = hg_repo[1]
    payload = hg_payload(hg_repo, ("bookmark:feature", "r2", "r4"))
    assert ids(payload) == [nodes["r4"], nodes["r3"]] and refs_of(payload) == ["bookmark:feature"] * 2


def test_hg_bookmark_created_at_an_existing_head_brings_none(hg_repo: tuple[Path, HgNodes]) -> None:
    payload = hg_payload(hg_repo, ("bookmark:fresh", ZERO, "r6"))
    assert payload["commits"] == [] and payload["total_commits"] == 0
    assert payload["refs"][0]["created"] is True


def test_hg_bookmark_created_with_new_changesets(hg_repo: tuple[Path, HgNodes]) -> None:
    """``hg push -B wip`` of a new head: listed once, under whichever ref the log gives first."""
    nodes = hg_repo[1]
    branch, bookmark = ("branch:default", "r4", "r7"), ("bookmark:wip", ZERO, "r7")
    first = hg_payload(hg_repo, branch, bookmark)
    assert ids(first) == [nodes["r7"]] and refs_of(first) == ["branch:default"] and first["total_commits"] == 1
    second = hg_payload(hg_repo, bookmark, branch)
    assert ids(second) == [nodes["r7"]] and refs_of(second) == ["bookmark:wip"] and second["total_commits"] == 1


def test_hg_big_push_is_counted_and_truncated(hg_repo: tuple[Path, HgNodes]) -> None:
    nodes = hg_repo[1]
    payload = hg_payload(hg_repo, ("branch:big", ZERO, "b25"), ("bookmark:big", "r0", "b25"))
    assert ids(payload) == [nodes[f"b{n}"] for n in range(25, 25 - MAX_COMMITS, -1)]
    assert payload["total_commits"] == 25 and payload["commits_truncated"] is True


def test_hg_nodes_not_in_the_repository_bring_nothing(hg_repo: tuple[Path, HgNodes]) -> None:
    payload = hg_payload(hg_repo, ("branch:default", "r4", MISSING), ("bookmark:raced", MISSING, "r4"),
                         ("branch:stable", "r4", "r6"))
    assert refs_of(payload) == ["branch:stable"] * 2 and payload["total_commits"] == 2


def _shape(value: Any) -> Any:
    """The keys of every object in ``value``, recursively; lists by their first element."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_git_and_hg_payloads_have_the_same_shape(repo: GitRepo, base: str, hg_repo: tuple[Path, HgNodes]) -> None:
    (c1,) = repo.chain(base, 1, "shape")
    repo.set("refs/heads/main", c1)
    git_payload = repo.payload(("refs/heads/main", base, c1))
    hg = hg_payload(hg_repo, ("branch:default", "r3", "r4"))
    assert _shape(git_payload) == _shape(hg)
    assert set(git_payload) == set(hg) == {"event", "repository", "pusher", "pushed_at", "refs", "commits",
                                           "total_commits", "commits_truncated"}


def test_hg_asks_no_hg_subprocess(hg_repo: tuple[Path, HgNodes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve, log and count (a created ref, a big push) are answered in-process by Mercurial."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"subprocess started: {args[:1]}")

    for name in ("run", "Popen", "check_output", "call"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    nodes = hg_repo[1]
    payload = hg_payload(hg_repo, ("branch:big", ZERO, "b25"), ("branch:default", "r1", "r4"))
    assert payload["total_commits"] == 28 and ids(payload)[:2] == [nodes["b25"], nodes["b24"]]


def test_hg_text_whatever_the_process_encoding(hg_repo: tuple[Path, HgNodes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Mercurial gives descriptions in the local encoding; the payload is UTF-8 all the same, and the
    process-wide setting is left as it was."""
    for local in (b"ascii", b"latin-1", b"utf-8"):
        monkeypatch.setattr(encoding, "encoding", local)
        commits = hg_payload(hg_repo, ("branch:default", "r1", "r4"))["commits"]
        (bob,) = [c for c in commits if c["author"]["name"] == "Bob"]
        assert bob["message"] == "Bob's change\n\nnaïve → 日本"
        assert encoding.encoding == local


def test_hg_ancient_non_utf8_text_is_read_as_latin1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``hg log`` did: a description or user stored in Latin-1 (before Mercurial stored UTF-8)."""
    repo = hg.repository(uimod.ui(), os.fsencode(tmp_path / "old"), create=True)
    monkeypatch.setattr(encoding, "fromlocal", lambda raw: raw)  # store the bytes as they are
    with repo.wlock(), repo.lock(), repo.transaction(b"test"):
        ctx = context.memctx(repo, (nullid, nullid), b"caf\xe9 cr\xe8me", [], None, user=b"Z\xe9 <z@example.com>",
                             date=(1700000000, 0))
        node = hexnode(repo.commitctx(ctx)).decode()
    monkeypatch.undo()
    payload = push_payload(vcs="hg", repo_dir=tmp_path / "old", owner="a", name="b", pusher="c", at=AT,
                           updates=[("branch:default", ZERO, node)], base_url=BASE_URL)
    (commit,) = payload["commits"]
    assert commit["message"] == "café crème" and commit["author"] == {"name": "Zé", "email": "z@example.com"}


def test_hg_repository_is_closed(hg_repo: tuple[Path, HgNodes], monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[object] = []
    real_close = localrepo.localrepository.close

    def close(self: Any) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(localrepo.localrepository, "close", close)
    hg_payload(hg_repo, ("branch:default", "r1", "r4"))
    assert len(closed) == 1
    hg_payload(hg_repo, ("branch:big", ZERO, "b25"), ("bookmark:raced", MISSING, "r4"))  # resolve, log and count
    assert len(closed) == 2


def test_hg_payloads_built_in_threads_agree(hg_repo: tuple[Path, HgNodes]) -> None:
    pushes = [(("branch:default", "r1", "r4"),), (("branch:stable", ZERO, "r6"),),
              (("branch:big", ZERO, "b25"), ("bookmark:big", "r0", "b25"))] * 4
    alone = [hg_payload(hg_repo, *push) for push in pushes]
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(lambda push: hg_payload(hg_repo, *push), pushes)) == alone


def test_hg_missing_repository(tmp_path: Path) -> None:
    """Not there: raises, as for git. There but no repository: no commits, logged."""
    update = ("branch:default", ZERO, MISSING)
    with pytest.raises(FileNotFoundError):
        push_payload(vcs="hg", repo_dir=tmp_path / "gone", owner="a", name="b", pusher="c", at=AT,
                     updates=[update], base_url=BASE_URL)
    (tmp_path / "empty").mkdir()
    payload = push_payload(vcs="hg", repo_dir=tmp_path / "empty", owner="a", name="b", pusher="c", at=AT,
                           updates=[update], base_url=BASE_URL)
    assert payload["commits"] == [] and payload["total_commits"] == 0
