"""Everyday hg operations with the real client through the whole stack.

Bookmarks, phases, tags, named branches, pulls into an existing clone, the
push log (``hostd log``) and a repository with hundreds of heads, whose
discovery makes the client send ~50 KB of ``X-HgArg-*`` headers through
HAProxy and gunicorn. Two users with distinct names push, so the log shows
who did what; each test gets its own repository and ends with ``hg verify``
of the served copy.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack

PASSWORD = "hal's and hera's long password"
OWNER = "hal"
OTHER = "hera"
ZERO = "0" * 12
HEADS = 600  # 600 common + 600 new heads: ~49 KB of getbundle arguments


@dataclass(frozen=True)
class Remote:
    """One hg repository on the stack: its name and its directory on the server."""

    name: str
    path: Path


@dataclass(frozen=True)
class LogLine:
    """One line of ``hostd log`` (hashes shortened to 12 digits)."""

    user: str
    ref: str
    old: str
    new: str


@pytest.fixture(scope="module")
def people(stack: Stack) -> None:
    stack.forget_failed_logins()
    for user in (OWNER, OTHER):
        stack.add_user(user, PASSWORD)


@pytest.fixture
def remote(stack: Stack, people: None) -> Remote:
    name = f"{OWNER}/ops{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", name, "--vcs", "hg")
    stack.hostd("grant", OTHER, name, "write")
    return Remote(name, stack.settings.repo_root / name)


def url(stack: Stack, remote: Remote, user: str = OWNER) -> str:
    # hg keeps no password in a clone's default path: every push and pull names the URL.
    return stack.url(remote.name, user, PASSWORD)


def hg(stack: Stack, *args: str, cwd: Path | None = None) -> str:
    """Run hg, fail the test if it fails, return its standard output."""
    return stack.clients.hg(*args, cwd=cwd).stdout


def commit(stack: Stack, work: Path, name: str, user: str = OWNER) -> str:
    (work / name).write_text(f"{name}\n")
    hg(stack, "commit", "-A", "-m", f"add {name}", "-u", user, cwd=work)
    return node(stack, work, ".")


def node(stack: Stack, work: Path, rev: str) -> str:
    return hg(stack, "log", "-r", rev, "-T", "{node}", cwd=work)


def phases(stack: Stack, work: Path, revs: str = "all()") -> set[str]:
    return set(hg(stack, "log", "-r", revs, "-T", "{phase}\n", cwd=work).split())


def push_log(stack: Stack, remote: Remote) -> list[LogLine]:
    """``hostd log``, newest first."""
    lines = []
    for line in stack.hostd("log", remote.name).stdout.splitlines():
        when, user, ref, change = line.split("\t")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", when), line
        old, new = change.split(" -> ")
        lines.append(LogLine(user, ref, old, new))
    return lines


def verify(stack: Stack, remote: Remote) -> None:
    """The served repository is intact (run on the server's own directory)."""
    hg(stack, "verify", "-R", str(remote.path))


def test_bookmarks_and_phases(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    hal, hera = tmp_path / "hal", tmp_path / "hera"
    hg(stack, "clone", url(stack, remote), str(hal))
    first = commit(stack, hal, "one.txt")
    hg(stack, "bookmark", "feat", cwd=hal)
    assert phases(stack, hal) == {"draft"}
    hg(stack, "push", "-B", "feat", url(stack, remote), cwd=hal)
    # The server publishes: what was pushed is public, on both sides.
    assert phases(stack, hal) == {"public"}

    hg(stack, "clone", url(stack, remote, OTHER), str(hera))
    assert phases(stack, hera) == {"public"}
    assert hg(stack, "bookmarks", "-T", "{bookmark} {node}\n", cwd=hera).split() == ["feat", first]

    hg(stack, "update", "feat", cwd=hera)
    second = commit(stack, hera, "two.txt", OTHER)
    assert hg(stack, "log", "-r", "feat", "-T", "{node}", cwd=hera) == second  # the active bookmark moved
    hg(stack, "push", "-B", "feat", url(stack, remote, OTHER), cwd=hera)
    assert phases(stack, hera) == {"public"}
    hg(stack, "bookmark", "-d", "feat", cwd=hera)
    deleted = stack.clients.hg("push", "-B", "feat", url(stack, remote, OTHER), cwd=hera, check=False)
    # hg push exits 1 when it sent no changesets, even though the bookmark went.
    assert deleted.returncode == 1 and "deleting remote bookmark feat" in deleted.stdout

    hg(stack, "pull", url(stack, remote), cwd=hal)
    assert phases(stack, hal) == {"public"}
    assert node(stack, hal, "tip") == second
    assert hg(stack, "bookmarks", "-R", str(remote.path), "-T", "{bookmark}\n") == ""

    assert push_log(stack, remote) == [  # newest first
        LogLine(OTHER, "bookmark:feat", second[:12], ZERO),
        LogLine(OTHER, "bookmark:feat", first[:12], second[:12]),
        LogLine(OTHER, "branch:default", first[:12], second[:12]),
        LogLine(OWNER, "bookmark:feat", ZERO, first[:12]),
        LogLine(OWNER, "branch:default", ZERO, first[:12]),
    ]
    verify(stack, remote)


def test_tags(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    work, fresh = tmp_path / "work", tmp_path / "fresh"
    hg(stack, "clone", url(stack, remote), str(work))
    tagged = commit(stack, work, "release.txt")
    hg(stack, "tag", "-u", OWNER, "v1", cwd=work)
    tag_commit = node(stack, work, "tip")
    hg(stack, "push", url(stack, remote), cwd=work)

    hg(stack, "clone", url(stack, remote, OTHER), str(fresh))
    tags = dict(line.split() for line in hg(stack, "tags", "-T", "{tag} {node}\n", cwd=fresh).splitlines())
    assert tags == {"tip": tag_commit, "v1": tagged}
    assert (fresh / ".hgtags").read_text() == f"{tagged} v1\n"
    assert push_log(stack, remote) == [LogLine(OWNER, "branch:default", ZERO, tag_commit[:12])]
    verify(stack, remote)


def test_named_branches(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    work, fresh = tmp_path / "work", tmp_path / "fresh"
    hg(stack, "clone", url(stack, remote), str(work))
    base = commit(stack, work, "base.txt")
    hg(stack, "push", url(stack, remote), cwd=work)
    hg(stack, "branch", "stable", cwd=work)
    stable = commit(stack, work, "stable.txt")

    refused = stack.clients.hg("push", url(stack, remote), cwd=work, check=False)
    assert refused.returncode != 0
    assert "new remote branches" in refused.stdout + refused.stderr
    hg(stack, "push", "--new-branch", url(stack, remote), cwd=work)

    hg(stack, "clone", url(stack, remote, OTHER), str(fresh))
    branches = hg(stack, "branches", "-T", "{branch} {node}\n", cwd=fresh).split("\n")
    assert f"stable {stable}" in branches and f"default {base}" in branches
    hg(stack, "update", "stable", cwd=fresh)
    fix = commit(stack, fresh, "fix.txt", OTHER)
    hg(stack, "push", url(stack, remote, OTHER), cwd=fresh)

    assert push_log(stack, remote) == [
        LogLine(OTHER, "branch:stable", stable[:12], fix[:12]),
        LogLine(OWNER, "branch:stable", ZERO, stable[:12]),
        LogLine(OWNER, "branch:default", ZERO, base[:12]),
    ]
    verify(stack, remote)


def test_pull_new_changesets_into_an_existing_clone(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    hal, hera = tmp_path / "hal", tmp_path / "hera"
    hg(stack, "clone", url(stack, remote), str(hal))
    commit(stack, hal, "one.txt")
    hg(stack, "push", url(stack, remote), cwd=hal)
    hg(stack, "clone", url(stack, remote, OTHER), str(hera))

    new = [commit(stack, hal, f"more{i}.txt") for i in range(3)]
    hg(stack, "push", url(stack, remote), cwd=hal)
    incoming = hg(stack, "incoming", "-q", "-T", "{node}\n", url(stack, remote, OTHER), cwd=hera).split()
    assert incoming == new
    hg(stack, "pull", "-u", url(stack, remote, OTHER), cwd=hera)
    assert node(stack, hera, ".") == new[-1]
    assert (hera / "more2.txt").read_text() == "more2.txt\n"
    nothing = stack.clients.hg("pull", url(stack, remote, OTHER), cwd=hera)
    assert "no changes found" in nothing.stdout
    verify(stack, remote)


def test_hundreds_of_heads(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    """600 anonymous heads, then 600 more on top: the second pull's discovery
    and getbundle carry every common and every new head as arguments, which
    hg sends as ``X-HgArg-N`` headers (1 KB each, the server's ``httpheader``)."""
    builder, puller = tmp_path / "builder", tmp_path / "puller"
    hg(stack, "init", str(builder))
    # +1:root is one root; *root:hN forks head N off it; *hN gives head N a child.
    dag = "+1:root " + " ".join(f"*root:h{i}" for i in range(HEADS)) + " " + " ".join(f"*h{i}" for i in range(HEADS))
    hg(stack, "debugbuilddag", dag, cwd=builder)
    assert hg(stack, "log", "-r", "head()", "-T", "x", cwd=builder) == "x" * HEADS

    hg(stack, "push", "-f", "-r", f"0:{HEADS}", url(stack, remote), cwd=builder)
    hg(stack, "clone", "-U", url(stack, remote, OTHER), str(puller))
    assert hg(stack, "log", "-r", "head()", "-T", "x", cwd=puller) == "x" * HEADS

    hg(stack, "push", "-f", url(stack, remote), cwd=builder)
    pulled = hg(stack, "pull", "--debug", "--config", "devel.debug.peer-request=yes",
                url(stack, remote, OTHER), cwd=puller)
    sizes = [int(n) for n in re.findall(r"(\d+) bytes of commands arguments in headers", pulled)]
    assert max(sizes) > 45_000, sizes
    assert f"added {HEADS} changesets" in pulled
    assert hg(stack, "log", "-r", "head()", "-T", "{node}\n", cwd=puller) == hg(
        stack, "log", "-r", "head()", "-T", "{node}\n", cwd=builder
    )

    entries = stack.hostd("log", remote.name, "--limit", str(3 * HEADS)).stdout.splitlines()
    assert len(entries) == 2 * HEADS  # every new head, then every head replaced by its child
    assert all(f"\t{OWNER}\tbranch:default\t" in line for line in entries)
    verify(stack, remote)


def test_a_full_clone_is_a_stream_clone(stack: Stack, remote: Remote, tmp_path: Path) -> None:
    """A default ``hg clone`` gets the store's files (the pool prefers a stream
    clone), not a bundle the client applies changeset by changeset; it ends
    with the same changesets, bookmarks, tags and phases."""
    hal, hera = tmp_path / "hal", tmp_path / "hera"
    hg(stack, "clone", url(stack, remote), str(hal))
    for name in ("one.txt", "two.txt"):
        commit(stack, hal, name)
    hg(stack, "tag", "-u", OWNER, "v1.0", cwd=hal)
    hg(stack, "bookmark", "-r", "tip", "feature", cwd=hal)
    hg(stack, "push", "-B", "feature", url(stack, remote), cwd=hal)

    cloned = hg(stack, "clone", url(stack, remote, OTHER), str(hera))
    assert "stream-cloned" in cloned, cloned
    assert node(stack, hera, "tip") == node(stack, hal, "tip")
    assert hg(stack, "log", "-T", "{node}\n", cwd=hera) == hg(stack, "log", "-T", "{node}\n", cwd=hal)
    assert hg(stack, "bookmarks", "-T", "{bookmark} {node}\n", cwd=hera) == hg(
        stack, "bookmarks", "-T", "{bookmark} {node}\n", cwd=hal)
    assert "v1.0" in hg(stack, "tags", cwd=hera)
    assert phases(stack, hera) == {"public"}
    hg(stack, "verify", cwd=hera)


def test_a_repository_with_a_secret_changeset_is_never_streamed(stack: Stack, remote: Remote,
                                                                 tmp_path: Path) -> None:
    """A stream clone copies the store as it is, so it would hand out secret
    changesets; Mercurial falls back to a bundle, which leaves them out."""
    hal, hera = tmp_path / "hal", tmp_path / "hera"
    hg(stack, "clone", url(stack, remote), str(hal))
    public = commit(stack, hal, "public.txt")
    hg(stack, "push", url(stack, remote), cwd=hal)
    secret = commit(stack, hal, "secret.txt")
    hg(stack, "push", url(stack, remote), cwd=hal)
    hg(stack, "phase", "--force", "--secret", "-r", secret, "-R", str(remote.path))

    cloned = hg(stack, "clone", url(stack, remote, OTHER), str(hera))
    assert "stream-cloned" not in cloned, cloned
    assert hg(stack, "log", "-T", "{node}\n", cwd=hera).split() == [public]
