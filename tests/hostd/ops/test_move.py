"""Moving a repository between two shards' directories, with the real git and hg, on a real PostgreSQL.

The move under traffic, through a whole stack with two shards, is in
tests/e2e/test_shards.py; here, what a move leaves behind when it works and
when it stops before the flip.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hostd.names import RepoName
from hostd.ops import move
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.fence import PushFence
from hostd.store.shards import Shards
from hostd.store.storage import Storage, hg_command

REF = RepoName("alice", "notes")
ENV = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
       "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "a",
       "GIT_COMMITTER_EMAIL": "a@example.com"}


def run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], env=ENV, check=True, capture_output=True, text=True).stdout


@pytest.fixture(params=["git", "hg"])
def vcs(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "s1", tmp_path / "s2"


@pytest.fixture
def placed(database: Database, roots: tuple[Path, Path], vcs: str, tmp_path: Path) -> Path:
    """alice/notes on shard default (root s1) with two commits and a branch or bookmark; its directory."""
    Shards(database).add("s2")
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_repo(REF, vcs, False, shard="default")
    path = Storage(roots[0]).create(REF, vcs, readme="# notes\n")
    work = tmp_path / "work"
    if vcs == "git":
        run("git", "clone", "-q", path, work)
        (work / "b").write_text("b\n")
        run("git", "-C", work, "add", "b")
        run("git", "-C", work, "commit", "-q", "-m", "b")
        run("git", "-C", work, "push", "-q", "origin", "HEAD:main", "HEAD:refs/heads/topic", "HEAD:refs/tags/v1")
    else:
        hg = hg_command()
        run(*hg, "clone", "-q", path, work)
        (work / "b").write_text("b\n")
        run(*hg, "-R", work, "commit", "-q", "-A", "-m", "b", "-u", "a")
        run(*hg, "-R", work, "bookmark", "topic")
        run(*hg, "-R", work, "push", "-q", "-B", "topic", path)
    return path


def state(vcs: str, path: Path) -> str:
    if vcs == "git":
        return run("git", "-C", path, "for-each-ref") + run("git", "-C", path, "symbolic-ref", "HEAD")
    return run(*hg_command(), "-R", path, "log", "-T", "{node} {phase} {bookmarks}\n")


def test_a_move_copies_verifies_flips_and_keeps_the_old_copy_aside(
        database: Database, roots: tuple[Path, Path], vcs: str, placed: Path) -> None:
    before = state(vcs, placed)
    moved = move.move(database, REF, "s2", source_root=roots[0], target_root=roots[1])
    new = Storage(roots[1]).path(REF, vcs)
    assert state(vcs, new) == before
    assert not placed.exists() and moved.old_copy.parent == roots[0] / ".moved"
    assert state(vcs, moved.old_copy) == before
    repo = Accounts(database).repo(REF)
    assert repo is not None and (repo.shard, repo.moving_to) == ("s2", None)
    assert moved.window < 5 and moved.verified >= 3
    assert f"{REF} moved from shard default to s2" in moved.summary()
    # Nothing of the staging copy is left; the new copy is a repository of its own, not a clone with a remote.
    assert sorted(p.name for p in (roots[1] / "alice").iterdir()) == [new.name]
    if vcs == "git":
        assert "remote" not in (new / "config").read_text()
        run("git", "-C", new, "fsck", "--strict")
    else:
        run(*hg_command(), "-R", new, "verify", "-q")


def test_a_move_that_cannot_get_the_fence_changes_nothing(
        database: Database, roots: tuple[Path, Path], vcs: str, placed: Path) -> None:
    before = state(vcs, placed)
    push = PushFence.enter(placed, vcs)  # a push that does not end
    try:
        with pytest.raises(TimeoutError):
            move.move(database, REF, "s2", source_root=roots[0], target_root=roots[1], lock_timeout=0.2)
    finally:
        push.release()
    assert state(vcs, placed) == before
    repo = Accounts(database).repo(REF)
    assert repo is not None and (repo.shard, repo.moving_to) == ("default", None)
    assert not (roots[1] / "alice").exists() or list((roots[1] / "alice").iterdir()) == []


@pytest.mark.parametrize(
    ("target", "message"),
    [("default", "is on shard default already"), ("s9", "no such shard: s9")],
)
def test_refusals(database: Database, roots: tuple[Path, Path], placed: Path, target: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        move.move(database, REF, target, source_root=roots[0], target_root=roots[1])


def test_a_wrong_source_directory_is_named(database: Database, roots: tuple[Path, Path], placed: Path) -> None:
    with pytest.raises(move.MoveError, match="is --from shard default's repository directory"):
        move.move(database, REF, "s2", source_root=roots[1], target_root=roots[0])


def test_an_interrupted_move_is_abandoned(database: Database, placed: Path) -> None:
    with database.transaction() as conn:
        conn.execute("UPDATE repos SET moving_to = 's2'")
    with pytest.raises(move.MoveError, match="--abandon"):
        move.move(database, REF, "s2", source_root=placed.parent.parent, target_root=placed.parent.parent)
    assert move.abandon(database, REF, "s2") is True
    assert move.abandon(database, REF, "s2") is False
    assert Accounts(database).repo(REF).moving_to is None  # type: ignore[union-attr]


def test_old_copies_are_purged_after_the_grace_period(tmp_path: Path) -> None:
    kept = tmp_path / move.MOVED_DIR
    (kept / "alice.old.git").mkdir(parents=True)
    (kept / "alice.new.git").mkdir()
    old = time.time() - move.GRACE - 60
    os.utime(kept / "alice.old.git", (old, old))
    assert move.purge_moved(tmp_path) == [kept / "alice.old.git"]
    assert [p.name for p in kept.iterdir()] == ["alice.new.git"]
    assert move.purge_moved(tmp_path / "nothing") == []
