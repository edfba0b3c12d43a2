"""Everyday git operations with the real client through the whole stack.

Shallow clones, tags, branch and tag deletion, forced and refused pushes,
incremental fetches, atomic pushes, gzipped negotiation, side-band progress,
and many clients pushing to one branch at once. Each test gets its own
repository; the last step of each is ``git fsck --full`` on both sides.

Races are made deterministic with a client ``pre-push`` hook: git runs it
after it has read the ref advertisement and before it sends the pack, so a
push from another clone inside the hook moves the branch under the client's
feet, exactly like a push that lands in between the two HTTP requests.
"""

from __future__ import annotations

import re
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import PACK_PATHS, each_pack_path
from tests.e2e.stackfixture import Stack

PASSWORD = "gina's long password"
OWNER = "gina"
HTTP_VERSIONS = ["HTTP/1.1", "HTTP/2"]


@dataclass(frozen=True)
class Remote:
    """One repository on the stack: its authenticated URL and its directory."""

    url: str
    path: Path


def _needs_gits_receive_pack(stack: Stack) -> None:
    """Races are settled by git's ref transactions; dulwich's fallback does not
    compare-and-swap (what it does not guarantee: hostd/git/fallback.py)."""
    if stack.settings.git_pack == "dulwich":
        pytest.skip("without git, pushes are dulwich's, which does not settle ref races")


@pytest.fixture(scope="module", params=PACK_PATHS)
def stack(request: pytest.FixtureRequest) -> Stack:
    """Every test here runs with git's upload-pack and with dulwich's."""
    return each_pack_path(request)


@pytest.fixture(scope="module")
def owner(stack: Stack) -> str:
    stack.forget_failed_logins()
    stack.add_user(OWNER, PASSWORD)
    return OWNER


@pytest.fixture
def remote(stack: Stack, owner: str) -> Remote:
    name = f"ops{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", f"{owner}/{name}", "--vcs", "git")
    return Remote(
        url=stack.url(f"{owner}/{name}.git", owner, PASSWORD),
        path=stack.settings.repo_root / owner / f"{name}.git",
    )


class Git:
    """The stack's git client pinned to one HTTP version."""

    def __init__(self, stack: Stack, version: str = "HTTP/1.1") -> None:
        self.stack = stack
        self.version = version

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.stack.clients.git(
            "-c", f"http.version={self.version}", *args, cwd=cwd, check=check, timeout=60, extra_env=env
        )

    def out(self, *args: str, cwd: Path | None = None) -> str:
        return self(*args, cwd=cwd).stdout.strip()

    def commit(self, work: Path, name: str) -> str:
        """Add a file called ``name`` in a new commit; its sha."""
        (work / name).write_text(f"{name}\n")
        self("add", name, cwd=work)
        self("commit", "-q", "-m", f"add {name}", cwd=work)
        return self.out("rev-parse", "HEAD", cwd=work)

    def remote_refs(self, url: str, *patterns: str, only: str | None = None) -> dict[str, str]:
        """``git ls-remote [--heads|--tags]`` as {ref: sha}."""
        refs = {}
        for line in self.out("ls-remote", *([f"--{only}"] if only else []), url, *patterns).splitlines():
            sha, ref = line.split("\t")
            refs[ref] = sha
        return refs

    def fsck(self, git_dir: Path) -> None:
        """``git fsck --full`` finds nothing wrong (dangling objects are fine)."""
        result = self("--git-dir", str(git_dir), "fsck", "--full", "--strict", "--no-progress", check=False)
        problems = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("dangling")]
        assert result.returncode == 0 and not problems, problems


def _seeded(git: Git, remote: Remote, work: Path, commits: int) -> list[str]:
    """Clone the empty ``remote`` into ``work``, push ``commits`` commits to main."""
    git("clone", "-q", remote.url, str(work))
    shas = [git.commit(work, f"file{i}.txt") for i in range(commits)]
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    return shas


def _move_main_before_push(work: Path, other: Path) -> None:
    """Install a pre-push hook in ``work`` that first pushes ``other``'s HEAD to main."""
    hook = work / ".git" / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"
        "unset $(git rev-parse --local-env-vars)\n"
        f"cd '{other}' && git push -q origin HEAD:refs/heads/main >&2\n"
    )
    hook.chmod(0o755)


def _capabilities(git: Git, *command: str, cwd: Path | None = None) -> set[str]:
    """The capabilities the server advertises to ``git <command>`` (protocol v0)."""
    traced = git("-c", "protocol.version=0", *command, cwd=cwd, env={"GIT_TRACE_PACKET": "1"}).stderr
    for line in traced.splitlines():
        if "git< " in line and "\\0" in line:
            return set(line.split("\\0", 1)[1].split())
    return set()


def _no_lock_files(repo: Path) -> None:
    assert not sorted(repo.rglob("*.lock")), "a ref lock was left behind"


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_shallow_clone_then_deepen_and_unshallow(stack: Stack, remote: Remote, tmp_path: Path, version: str) -> None:
    git = Git(stack, version)
    shas = _seeded(git, remote, tmp_path / "seed", commits=6)

    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", remote.url, str(shallow))
    assert git.out("rev-list", "--count", "HEAD", cwd=shallow) == "1"
    assert (shallow / ".git" / "shallow").read_text().split() == [shas[-1]]
    assert git.out("rev-parse", "--is-shallow-repository", cwd=shallow) == "true"

    git("fetch", "-q", "--depth", "3", cwd=shallow)
    assert git.out("rev-list", "--count", "HEAD", cwd=shallow) == "3"

    git("fetch", "-q", "--unshallow", cwd=shallow)
    assert git.out("rev-parse", "--is-shallow-repository", cwd=shallow) == "false"
    assert git.out("rev-list", "--reverse", "HEAD", cwd=shallow).split() == shas
    git.fsck(shallow / ".git")
    git.fsck(remote.path)


def test_shallow_clone_deepened_relatively(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    git = Git(stack)
    _seeded(git, remote, tmp_path / "seed", commits=6)
    advertised = _capabilities(git, "ls-remote", remote.url)
    assert "shallow" in advertised, advertised
    if "deepen-relative" not in advertised:
        pytest.skip(
            "dulwich's upload-pack (HOSTD_GIT_PACK=dulwich) does not implement deepen-relative, so git refuses "
            "`fetch --deepen` with 'Server does not support --deepen' (--depth N works)"
        )
    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "2", remote.url, str(shallow))
    git("fetch", "-q", "--deepen", "2", cwd=shallow)
    assert git.out("rev-list", "--count", "HEAD", cwd=shallow) == "4"
    git.fsck(shallow / ".git")


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_lightweight_and_annotated_tags_are_pushed_cloned_and_deleted(
    stack: Stack, remote: Remote, tmp_path: Path, version: str
) -> None:
    git = Git(stack, version)
    work = tmp_path / "work"
    first, second = _seeded(git, remote, work, commits=2)
    git("tag", "light", first, cwd=work)
    git("tag", "-a", "-m", "release one", "v1.0", second, cwd=work)
    git("push", "-q", "origin", "--tags", cwd=work)
    annotated = git.out("rev-parse", "v1.0", cwd=work)

    tags = git.remote_refs(remote.url, only="tags")
    assert tags == {
        "refs/tags/light": first,
        "refs/tags/v1.0": annotated,
        "refs/tags/v1.0^{}": second,
    }

    clone = tmp_path / "clone"
    git("clone", "-q", remote.url, str(clone))
    assert git.out("tag", "--list", cwd=clone).split() == ["light", "v1.0"]
    assert git.out("cat-file", "-t", "light", cwd=clone) == "commit"
    assert git.out("cat-file", "-t", "v1.0", cwd=clone) == "tag"
    assert git.out("describe", cwd=clone) == "v1.0"

    git("push", "-q", "origin", "--delete", "light", cwd=work)
    git("push", "-q", "origin", ":refs/tags/v1.0", cwd=work)
    assert git.remote_refs(remote.url, only="tags") == {}
    assert set(git.remote_refs(remote.url)) == {"HEAD", "refs/heads/main"}
    git.fsck(clone / ".git")
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_branch_create_and_delete(stack: Stack, remote: Remote, tmp_path: Path, version: str) -> None:
    git = Git(stack, version)
    work = tmp_path / "work"
    (base,) = _seeded(git, remote, work, commits=1)
    git("switch", "-q", "-c", "feature", cwd=work)
    tip = git.commit(work, "feature.txt")
    git("push", "-q", "origin", "feature", cwd=work)
    assert git.remote_refs(remote.url, only="heads") == {"refs/heads/main": base, "refs/heads/feature": tip}

    clone = tmp_path / "clone"
    git("clone", "-q", "--branch", "feature", remote.url, str(clone))
    assert git.out("rev-parse", "HEAD", cwd=clone) == tip

    result = git("push", "--porcelain", "origin", "--delete", "feature", cwd=work)
    assert "[deleted]" in result.stdout
    assert git.remote_refs(remote.url, only="heads") == {"refs/heads/main": base}
    assert not (remote.path / "refs" / "heads" / "feature").exists()

    # The same name can be created again once it is gone.
    git("push", "-q", "origin", "main:refs/heads/feature", cwd=work)
    assert git.remote_refs(remote.url, only="heads") == {"refs/heads/main": base, "refs/heads/feature": base}
    git.fsck(clone / ".git")
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_non_fast_forward_is_rejected_and_forced_push_accepted(
    stack: Stack, remote: Remote, tmp_path: Path, version: str
) -> None:
    git = Git(stack, version)
    a, b = tmp_path / "a", tmp_path / "b"
    _seeded(git, remote, a, commits=1)
    git("clone", "-q", remote.url, str(b))
    theirs = git.commit(a, "theirs.txt")
    git("push", "-q", "origin", "main", cwd=a)
    ours = git.commit(b, "ours.txt")

    refused = git("push", "origin", "main", cwd=b, check=False)
    assert refused.returncode != 0
    assert "[rejected]" in refused.stderr and "(fetch first)" in refused.stderr, refused.stderr

    git("fetch", "-q", cwd=b)
    refused = git("push", "origin", "main", cwd=b, check=False)
    assert refused.returncode != 0
    assert "[rejected]" in refused.stderr and "(non-fast-forward)" in refused.stderr, refused.stderr
    assert git.remote_refs(remote.url, "refs/heads/main") == {"refs/heads/main": theirs}

    forced = git("push", "origin", "+main", cwd=b)
    assert "(forced update)" in forced.stderr
    assert git.remote_refs(remote.url, "refs/heads/main") == {"refs/heads/main": ours}

    fetched = git("fetch", "origin", cwd=a)
    assert "(forced update)" in fetched.stderr
    assert git.out("rev-parse", "origin/main", cwd=a) == ours
    git.fsck(a / ".git")
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_push_that_loses_a_race_is_rejected_not_dropped(
    stack: Stack, remote: Remote, tmp_path: Path, version: str
) -> None:
    """The branch moves between the ref advertisement and the pack: the server's
    compare-and-swap fails, and the client must hear about it."""
    _needs_gits_receive_pack(stack)
    git = Git(stack, version)
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    _seeded(git, remote, slow, commits=1)
    git("clone", "-q", remote.url, str(fast))
    winner = git.commit(fast, "winner.txt")
    loser = git.commit(slow, "loser.txt")
    _move_main_before_push(slow, fast)

    result = git("push", "--porcelain", "origin", "main", cwd=slow, check=False)
    assert result.returncode != 0, "the lost race was reported as a success"
    assert "[remote rejected]" in result.stdout, result.stdout + result.stderr
    assert "failed to update ref" in result.stdout
    assert git.remote_refs(remote.url, "refs/heads/main") == {"refs/heads/main": winner}

    # The loser recovers the ordinary way.
    (slow / ".git" / "hooks" / "pre-push").unlink()
    git("pull", "-q", "--rebase", cwd=slow)
    git("push", "-q", "origin", "main", cwd=slow)
    log = git.out("log", "--format=%s", "origin/main", cwd=slow).splitlines()
    assert log[:2] == ["add loser.txt", "add winner.txt"]
    assert loser not in git.out("rev-list", "origin/main", cwd=slow)  # rebased, so a new sha
    _no_lock_files(remote.path)
    git.fsck(slow / ".git")
    git.fsck(remote.path)


def test_atomic_push_lands_all_refs_or_none(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    _needs_gits_receive_pack(stack)
    git = Git(stack)
    work, other = tmp_path / "work", tmp_path / "other"
    (base,) = _seeded(git, remote, work, commits=1)
    advertised = _capabilities(git, "push", "--dry-run", "origin", "main", cwd=work)
    assert "report-status" in advertised, advertised
    if "atomic" not in advertised:
        pytest.skip("the server's receive-pack does not advertise the atomic capability")

    tip = git.commit(work, "one.txt")
    git("tag", "-a", "-m", "atomic", "v1", cwd=work)
    git("push", "-q", "--atomic", "origin", "main", "main:refs/heads/copy", "v1", cwd=work)
    refs = git.remote_refs(remote.url)
    assert refs["refs/heads/main"] == refs["refs/heads/copy"] == refs["refs/tags/v1^{}"] == tip

    # A client-side refusal of one ref (non-fast-forward) stops the others too.
    git("clone", "-q", remote.url, str(other))
    git("reset", "-q", "--hard", base, cwd=other)
    git.commit(other, "diverged.txt")
    refused = git("push", "--atomic", "origin", "main", "main:refs/heads/new-one", cwd=other, check=False)
    assert refused.returncode != 0
    assert "refs/heads/new-one" not in git.remote_refs(remote.url)

    # A server-side refusal (the branch moved under us) stops the others too.
    git("fetch", "-q", cwd=other)
    git("reset", "-q", "--hard", "origin/main", cwd=other)
    interloper = git.commit(other, "interloper.txt")
    git.commit(work, "two.txt")
    _move_main_before_push(work, other)
    refused = git("push", "--porcelain", "--atomic", "origin", "main", "main:refs/heads/new-two", cwd=work, check=False)
    assert refused.returncode != 0, "a lost race in an atomic push was reported as a success"
    assert refused.stdout.count("[remote rejected]") == 2, refused.stdout + refused.stderr
    assert "atomic transaction failed" in refused.stdout
    refs = git.remote_refs(remote.url)
    assert "refs/heads/new-two" not in refs
    assert refs["refs/heads/main"] == interloper
    _no_lock_files(remote.path)
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_fetch_is_incremental(stack: Stack, remote: Remote, tmp_path: Path, version: str) -> None:
    git = Git(stack, version)
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    shas = _seeded(git, remote, writer, commits=3)
    git("clone", "-q", remote.url, str(reader))
    new = [git.commit(writer, f"later{i}.txt") for i in range(3)]
    git("push", "-q", "origin", "main", cwd=writer)

    fetched = git("fetch", "--progress", "origin", cwd=reader, env={"GIT_TRACE_PACKET": "1"})
    assert f"have {shas[-1]}" in fetched.stderr, "the client did not negotiate from what it had"
    # 3 commits, 3 trees, 3 blobs: only the new (dulwich says "counting", git "Enumerating")
    # The new objects are 3 commits, 3 trees and 3 blobs; the repository has
    # twice as many. dulwich counts exactly those 9; git also enumerates an
    # edge tree of the client's it will send deltas against.
    counted = re.search(r"remote: (counting|enumerating) objects: (\d+), done\.", fetched.stderr, re.IGNORECASE)
    assert counted is not None, fetched.stderr
    assert 9 <= int(counted[2]) < 18
    assert f"{shas[-1][:7]}..{new[-1][:7]}" in fetched.stderr
    git("merge", "-q", "--ff-only", "origin/main", cwd=reader)
    assert git.out("rev-list", "--reverse", "HEAD", cwd=reader).split() == shas + new
    git.fsck(reader / ".git")
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_large_negotiation_is_gzipped_and_understood(
    stack: Stack, remote: Remote, tmp_path: Path, version: str
) -> None:
    """git gzips upload-pack requests over 1 KiB: here, 40 wants on clone and
    40 haves on fetch. One push of 40 branches goes the other way."""
    git = Git(stack, version)
    work = tmp_path / "work"
    git("clone", "-q", remote.url, str(work))
    tips = [git.commit(work, f"f{i}.txt") for i in range(40)]
    for i, sha in enumerate(tips):
        git("branch", f"b{i:02}", sha, cwd=work)
    git("push", "-q", "origin", "HEAD:refs/heads/main", "refs/heads/b*:refs/heads/b*", cwd=work)
    assert len(git.remote_refs(remote.url, only="heads")) == 41

    clone = tmp_path / "clone"
    trace = {"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"}
    cloned = git("clone", "--no-single-branch", remote.url, str(clone), env=trace)
    assert "content-encoding: gzip" in cloned.stderr.lower(), "the client did not gzip; the test proves nothing"
    assert len(git.out("branch", "-r", cwd=clone).splitlines()) == 42  # with origin/HEAD

    # Fetch with many haves: each branch grows by one commit.
    for i in range(40):
        git("switch", "-q", f"b{i:02}", cwd=work)
        git.commit(work, f"g{i}.txt")
    git("push", "-q", "origin", "refs/heads/b*:refs/heads/b*", cwd=work)
    fetched = git("fetch", "origin", cwd=clone, env=trace)
    assert "content-encoding: gzip" in fetched.stderr.lower()
    for i in range(40):
        assert git.out("rev-parse", f"origin/b{i:02}", cwd=clone) == git.out("rev-parse", f"b{i:02}", cwd=work)
    git.fsck(clone / ".git")
    git.fsck(remote.path)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_clone_shows_side_band_progress(stack: Stack, remote: Remote, tmp_path: Path, version: str) -> None:
    """The server's progress arrives on side-band 2 ("remote: ..."), the pack on band 1.

    A pack under ``transfer.unpackLimit`` objects goes to a silent
    ``unpack-objects``; a limit of 1 makes git index it with its own progress.
    """
    git = Git(stack, version)
    _seeded(git, remote, tmp_path / "seed", commits=3)
    cloned = git("-c", "transfer.unpackLimit=1", "clone", "--progress", remote.url, str(tmp_path / "clone"),
                 env={"GIT_PROGRESS_DELAY": "0"})
    lines = cloned.stderr.replace("\r", "\n").splitlines()
    remote_lines = [line.lower() for line in lines if line.startswith("remote:")]
    assert any("counting objects" in line or "enumerating objects" in line for line in remote_lines), cloned.stderr
    assert "Receiving objects: 100%" in cloned.stderr
    quiet = git("clone", "-q", remote.url, str(tmp_path / "quiet"))
    assert "remote:" not in quiet.stderr
    git.fsck(tmp_path / "clone" / ".git")


PUSHERS = 16
ATTEMPTS = 2 * PUSHERS  # each pusher wins within PUSHERS rounds; this is a bound, not a target


@dataclass
class Pusher:
    """One of the concurrent clients: its clone and what happened to its pushes."""

    work: Path
    git: Git
    landed: str | None = None
    attempts: list[str] = field(default_factory=list)  # "ok", "fetch first" or "failed to update ref"

    def run(self, start: threading.Barrier) -> None:
        """Push at once with the others, then fetch, rebase and retry until it lands."""
        start.wait()
        for _ in range(ATTEMPTS):
            result = self.git("push", "--porcelain", "origin", "main", cwd=self.work, check=False)
            if result.returncode == 0:
                self.attempts.append("ok")
                self.landed = self.git.out("rev-parse", "HEAD", cwd=self.work)
                return
            self.attempts.append(_rejection(result))
            self.git("pull", "-q", "--rebase", cwd=self.work)


def test_concurrent_pushes_to_one_branch(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    """16 clients (half over HTTP/2) push to main at once, then retry until they land.

    Every push is either accepted or visibly rejected: by the client ("fetch
    first", it saw a newer main) or by the server ("failed to update ref", main
    moved between the advertisement and the pack). Nothing accepted is lost,
    and the fetches racing the pushes are served (not an HTTP 500).
    """
    _needs_gits_receive_pack(stack)
    git = Git(stack)
    (seed,) = _seeded(git, remote, tmp_path / "seed", commits=1)
    pushers = [Pusher(tmp_path / f"c{i:02}", Git(stack, HTTP_VERSIONS[i % 2])) for i in range(PUSHERS)]
    with ThreadPoolExecutor(PUSHERS) as pool:
        list(pool.map(lambda pusher: git("clone", "-q", remote.url, str(pusher.work)), pushers))
    for pusher in pushers:
        git.commit(pusher.work, f"{pusher.work.name}.txt")
    start = threading.Barrier(PUSHERS, timeout=30)
    with ThreadPoolExecutor(PUSHERS) as pool:
        list(pool.map(lambda pusher: pusher.run(start), pushers))  # re-raises a pusher's failure

    first_round = [pusher.attempts[0] for pusher in pushers]
    assert first_round.count("ok") == 1, f"all pushed onto {seed}, so exactly one can win: {first_round}"
    assert all(pusher.landed for pusher in pushers), [pusher.attempts for pusher in pushers]
    check = tmp_path / "check"
    git("clone", "-q", remote.url, str(check))
    history = git.out("rev-list", "HEAD", cwd=check).split()
    assert {pusher.landed for pusher in pushers} <= set(history), "an accepted push is missing from main"
    assert len(history) == 1 + PUSHERS and history[-1] == seed
    assert git.out("rev-list", "--merges", "HEAD", cwd=check) == ""
    _no_lock_files(remote.path)
    git.fsck(check / ".git")
    git.fsck(remote.path)


def _rejection(result: subprocess.CompletedProcess[str]) -> str:
    """Why ``git push --porcelain`` refused main, failing the test on anything
    but the two ways a lost race shows (an HTTP error, a hang-up...)."""
    for line in result.stdout.splitlines():
        if line.startswith("!\trefs/heads/main:refs/heads/main\t"):
            reason = line.split("\t")[2]
            if reason == "[rejected] (fetch first)":
                return "fetch first"
            if reason == "[remote rejected] (failed to update ref)":
                return "failed to update ref"
    raise AssertionError(f"push failed in an unexpected way:\n{result.stdout}\n{result.stderr}")
