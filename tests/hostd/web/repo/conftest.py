"""Real git and Mercurial repositories with the same story, made by the real ``git`` and ``hg`` commands.

The story (:class:`Story` holds each commit's id):

1. ``initial``: README.md, src/app.py, docs/guide.txt
2. ``names`` (message with markup): files whose names are markup, quotes and
   URL delimiters, one not UTF-8, a symlink to ``../../etc/passwd``, a binary
   file, an executable; src/app.py changed. Tag ``v1.0`` here.
3. ``feature`` on branch ``feature/x`` (git branch, hg bookmark): src/app.py changed.
4. ``main`` on the default branch: docs/guide.txt changed.
5. ``merge`` of feature/x into the default branch.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostd.store.storage import hg_command
from hostd.web.repo.git import GitReader
from hostd.web.repo.hg import HgReader
from hostd.web.repo.model import Reader

README = "# Hello\n\nSome *text*.\n\n<script>alert('readme')</script>\n\n[x](javascript:alert(1))\n"
MARKUP_NAME = b"<img src=x onerror=alert(1)>.txt"
QUOTE_NAME = b"q\"uote's %41 ?#.txt"
LATIN1_NAME = b"caf\xe9.txt"
BINARY = bytes(range(256)) * 4
MESSAGE = "<script>alert('msg')</script> names\n\nbody line"
#: A ref named with markup, at the first commit (git refuses spaces in ref names, hg takes them).
GIT_MARKUP_REF = b"<svg/onload=alert(1)>"
HG_MARKUP_REF = b"<img src=x onerror=alert(1)>"

_ENV = {
    "PATH": os.environ["PATH"], "HOME": "/nonexistent", "LANG": "C",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Ann <b>Author</b>", "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann", "GIT_COMMITTER_EMAIL": "ann@example.com",
    "HGRCPATH": "", "HGPLAIN": "1", "HGUSER": "Ann <b>Author</b> <ann@example.com>",
}


_CLOCK = [1_700_000_000]


def run(cwd: Path, *argv: str) -> str:
    """A command in ``cwd`` without user or system configuration; its stdout, stripped.

    Each command's commits are a minute after the last one's: history in date
    order is then the order the story tells.
    """
    _CLOCK[0] += 60
    date = f"{_CLOCK[0]} +0000"
    env = {**_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(list(argv), cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", "-c", "init.defaultBranch=main", *args)


def hg(cwd: Path, *args: str) -> str:
    return run(cwd, *hg_command(), *args)


def write(root: Path, name: bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(root), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


@dataclass
class Story:
    """A repository with the story above, and how to read it."""

    vcs: str
    path: Path
    default: bytes  # the default branch's name
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def markup_ref(self) -> bytes:
        return GIT_MARKUP_REF if self.vcs == "git" else HG_MARKUP_REF

    def reader(self) -> Reader:
        return GitReader(self.path) if self.vcs == "git" else HgReader(self.path)


def _names_commit(work: Path) -> None:
    write(work, MARKUP_NAME, b"markup\n")
    write(work, QUOTE_NAME, b"quotes\n")
    write(work, LATIN1_NAME, b"latin-1\n")
    write(work, b"bin.dat", BINARY)
    write(work, b"run.sh", b"#!/bin/sh\necho hi\n")
    os.chmod(work / "run.sh", 0o755)
    os.symlink("../../etc/passwd", work / "link")
    write(work, b"src/app.py", b"def app():\n    return 2\n")


def _git_story(root: Path) -> Story:
    work = root / "git-work"
    work.mkdir()
    git(work, "init", "-q")
    story = Story("git", work / ".git", b"main")

    def commit(key: str, message: str) -> None:
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", message)
        story.ids[key] = git(work, "rev-parse", "HEAD")

    write(work, b"README.md", README.encode())
    write(work, b"src/app.py", b"def app():\n    return 1\n")
    write(work, b"docs/guide.txt", b"guide\n")
    commit("initial", "Initial commit")
    git(work, "branch", GIT_MARKUP_REF.decode())
    _names_commit(work)
    commit("names", MESSAGE)
    git(work, "tag", "-a", "-m", "release", "v1.0")
    git(work, "checkout", "-q", "-b", "feature/x")
    write(work, b"src/app.py", b"def app():\n    return 3\n")
    commit("feature", "feature work")
    git(work, "checkout", "-q", "main")
    write(work, b"docs/guide.txt", b"guide, more\n")
    commit("main", "main work")
    git(work, "merge", "-q", "--no-ff", "-m", "Merge feature/x", "feature/x")
    story.ids["merge"] = git(work, "rev-parse", "HEAD")
    return story


def _hg_story(root: Path) -> Story:
    work = root / "hg-work"
    hg(root, "init", str(work))
    story = Story("hg", work, b"default")

    def commit(key: str, message: str) -> None:
        hg(work, "commit", "-A", "-q", "-m", message, "-d", f"{_CLOCK[0]} 0")
        story.ids[key] = hg(work, "log", "-r", ".", "-T", "{node}")

    write(work, b"README.md", README.encode())
    write(work, b"src/app.py", b"def app():\n    return 1\n")
    write(work, b"docs/guide.txt", b"guide\n")
    commit("initial", "Initial commit")
    hg(work, "bookmark", "--inactive", HG_MARKUP_REF.decode())
    _names_commit(work)
    commit("names", MESSAGE)
    hg(work, "tag", "-q", "-r", ".", "v1.0")  # a changeset of its own, as hg does
    story.ids["tagged"] = story.ids["names"]
    story.ids["names+tag"] = hg(work, "log", "-r", ".", "-T", "{node}")
    hg(work, "bookmark", "feature/x")
    write(work, b"src/app.py", b"def app():\n    return 3\n")
    commit("feature", "feature work")
    hg(work, "update", "-q", "-r", story.ids["names+tag"])
    write(work, b"docs/guide.txt", b"guide, more\n")
    commit("main", "main work")
    hg(work, "merge", "-q", "-r", "feature/x")
    commit("merge", "Merge feature/x")
    hg(work, "update", "-q", "null")  # served repositories keep no working copy
    return story


@pytest.fixture(scope="module")
def git_story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return _git_story(tmp_path_factory.mktemp("story"))


@pytest.fixture(scope="module")
def hg_story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return _hg_story(tmp_path_factory.mktemp("story"))


@pytest.fixture(params=["git", "hg"])
def story(request: pytest.FixtureRequest) -> Story:
    """The story in each system in turn."""
    made: Story = request.getfixturevalue(f"{request.param}_story")
    return made

