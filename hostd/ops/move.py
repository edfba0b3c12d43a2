"""Moving a repository to another storage shard, while it is in use (``hostd repo move``).

The steps, and what each guarantees:

1. **Copy while live**: the repository is copied into a staging directory
   beside its new place with git's or Mercurial's own transfer (never a file
   copy of a repository being written). Clones and pushes go on meanwhile.
2. **Read-only window**: ``repos.moving_to`` is set; every pool hears it
   (the change feed) and refuses pushes with a message to try again in a
   moment. The move then takes the repository's push fence alone
   (:func:`hostd.store.fence.exclusive`): it waits for the pushes already
   running, and a push that slipped past a stale cache waits for the move.
3. **Final sync and verification**: what changed during the copy is fetched
   into the staging copy; then every ref (git), or every changeset with its
   phase and every bookmark (hg), must be the same on both sides, or the
   move stops and nothing changes.
4. **Flip**: the staging copy takes its place, the old directory is moved
   aside (a push that waited for the fence finds it gone and is told to push
   again), and the repository's row names the new shard, in one commit. The
   route followers move its traffic within moments; until then the old
   shard's pools answer 421, never from the old copy.
5. **The old copy** is kept under ``.moved/`` of the old shard's repository
   directory for a grace period (``hostd maintain`` removes it after
   :data:`GRACE`), then deleted.

A failure before the flip (a mismatch, the fence not free in time, the
database gone) undoes the window and leaves the repository where it was;
the staging copy is removed. No push is lost or split across shards.

The move runs where both repository directories can be reached as paths
(``--from`` and ``--to``; by default this host's own for its own shard).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hostd.names import RepoName
from hostd.store.accounts import Accounts, Repo
from hostd.store.database import Database
from hostd.store.fence import exclusive
from hostd.store.shards import Shards
from hostd.store.storage import Storage, hg_command

log = logging.getLogger(__name__)

#: Seconds the old copy is kept after a move (``hostd maintain`` removes it later).
GRACE: Final = 24 * 3600.0
#: Where the old copies wait, under the old shard's repository directory.
MOVED_DIR: Final = ".moved"
#: Seconds a move waits for the pushes running when its window opens.
LOCK_TIMEOUT: Final = 60.0
_ENV: Final = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": "/usr/local/bin:/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1",
               "HOME": "/nonexistent", "LANG": "C.UTF-8"}


class MoveError(Exception):
    """The move cannot be done, or stopped before the flip; the repository is where it was."""


@dataclass(frozen=True, slots=True)
class Moved:
    """What a move did."""

    ref: RepoName
    source: str
    target: str
    #: Seconds pushes were refused (from the flag to the flip).
    window: float
    #: Refs (git) or changesets and bookmarks (hg) verified equal on both sides.
    verified: int
    old_copy: Path
    #: Where the window went: waiting for the pushes running when it opened,
    #: the final sync, the verification (seconds each).
    steps: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def summary(self) -> str:
        waited, synced, checked = self.steps
        return (f"{self.ref} moved from shard {self.source} to {self.target}: {self.verified} refs verified,"
                f" read-only for {self.window:.2f} s (running pushes {waited:.2f} s, final sync {synced:.2f} s,"
                f" verification {checked:.2f} s); the old copy is kept in {self.old_copy}")


def move(db: Database, ref: RepoName, target: str, *, source_root: Path, target_root: Path,
         lock_timeout: float = LOCK_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> Moved:
    """Move ``ref`` to shard ``target`` (see the module's steps); MoveError when it did not happen."""
    accounts = Accounts(db)
    repo = accounts.repo(ref)
    if repo is None:
        raise MoveError(f"no such repository: {ref}")
    Shards(db).get(target)
    if repo.shard == target:
        raise MoveError(f"{ref} is on shard {target} already")
    if repo.moving_to is not None:
        raise MoveError(f"{ref} is being moved to {repo.moving_to} (if that move was interrupted: hostd repo move"
                        f" {ref} {repo.moving_to} --abandon)")
    source = Storage(source_root).path(ref, repo.vcs)
    final = Storage(target_root).path(ref, repo.vcs)
    if not source.is_dir():
        raise MoveError(f"{ref} is not at {source}: is --from shard {repo.shard}'s repository directory?")
    if final.exists():
        raise MoveError(f"{final} exists already")
    staging = final.with_name(f".{final.name}.moving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        _copy(repo.vcs, source, staging)
        # Catch up once more while pushes still land: the copy may be minutes
        # old, and what is fetched now is not fetched in the window.
        _sync(repo.vcs, source, staging)
        return _switch(db, repo, target, source, staging, final, source_root, lock_timeout, clock)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def abandon(db: Database, ref: RepoName, target: str) -> bool:
    """Close the window an interrupted move left open (its repository stayed where it was); whether one was."""
    with db.transaction() as conn:
        cur = conn.execute("UPDATE repos SET moving_to = NULL WHERE owner = %s AND name = %s AND moving_to = %s",
                           (ref.owner, ref.name, target))
        return cur.rowcount == 1


def _switch(db: Database, repo: Repo, target: str, source: Path, staging: Path, final: Path,
            source_root: Path, lock_timeout: float, clock: Callable[[], float]) -> Moved:
    _set(db, "moving_to = %s", repo, target)
    opened = clock()
    try:
        with exclusive(source, repo.vcs, timeout=lock_timeout):
            fenced = clock()
            _sync(repo.vcs, source, staging)
            synced = clock()
            verified = _verify(repo.vcs, source, staging)
            checked = clock()
            staging.rename(final)
            old = source_root / MOVED_DIR / f"{repo.owner}.{final.name}.{time.strftime('%Y%m%dT%H%M%S')}"
            old.parent.mkdir(mode=0o700, exist_ok=True)
            source.rename(old)
            os.utime(old)  # the grace period runs from now (hostd maintain)
            try:
                _set(db, "shard = %s, moving_to = NULL", repo, target)
            except BaseException:
                old.rename(source)
                final.rename(staging)
                raise
            window = clock() - opened
    except BaseException:
        abandon(db, repo.ref, target)
        raise
    log.info("moved %s from %s to %s; read-only for %.2f s", repo.ref, repo.shard, target, window)
    return Moved(repo.ref, repo.shard, target, window, verified, old,
                 (fenced - opened, synced - fenced, checked - synced))


def _set(db: Database, assignments: str, repo: Repo, target: str) -> None:
    with db.transaction() as conn:
        conn.execute(f"UPDATE repos SET {assignments} WHERE owner = %s AND name = %s", (target, repo.owner, repo.name))


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise MoveError(f"{' '.join(map(str, args[:3]))} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def _copy(vcs: str, source: Path, staging: Path) -> None:
    """A full copy through the VCS's own transfer: consistent whatever pushes run meanwhile."""
    if vcs == "git":
        _run("git", "clone", "--mirror", "--no-local", "--quiet", source, staging)
        # The repository's own configuration, not the clone's (whose origin points at the old place).
        shutil.copy2(source / "config", staging / "config")
    else:
        _run(*hg_command(), "clone", "--noupdate", "--pull", "--quiet", source, staging)
        for name in ("hgrc",):
            if (source / ".hg" / name).exists():
                shutil.copy2(source / ".hg" / name, staging / ".hg" / name)


def _sync(vcs: str, source: Path, staging: Path) -> None:
    """What changed since the copy (the source is fenced now: nothing changes while this runs)."""
    if vcs == "git":
        _run("git", "-C", staging, "fetch", "--prune", "--quiet", "--no-write-fetch-head", source, "+refs/*:refs/*")
        head = _run("git", "-C", source, "symbolic-ref", "HEAD").strip()
        _run("git", "-C", staging, "symbolic-ref", "HEAD", head)
    else:
        _run(*hg_command(), "-R", staging, "pull", "--quiet", source)
        # pull adds and moves bookmarks but never deletes one: take the source's as they are.
        bookmarks = source / ".hg" / "bookmarks"
        if bookmarks.exists():
            shutil.copy2(bookmarks, staging / ".hg" / "bookmarks")
        else:
            (staging / ".hg" / "bookmarks").unlink(missing_ok=True)


def _state(vcs: str, path: Path) -> list[str]:
    if vcs == "git":
        return sorted(_run("git", "-C", path, "for-each-ref", "--format=%(objectname) %(refname)").splitlines()
                      + [_run("git", "-C", path, "symbolic-ref", "HEAD").strip()])
    # One Mercurial start per side (each costs more than the reading):
    # every changeset with its phase, and every bookmark with its changeset.
    lines = _run(*hg_command(), "-R", path, "log", "-r", "all()", "-T", "{node} {phase} {bookmarks}\n").splitlines()
    changesets = [" ".join(line.split()[:2]) for line in lines]
    bookmarks = sorted(f"{mark} {line.split()[0]}" for line in lines for mark in line.split()[2:])
    return changesets + bookmarks


def _verify(vcs: str, source: Path, staging: Path) -> int:
    """Every ref (git) or changeset, phase and bookmark (hg) the same on both sides; how many."""
    with ThreadPoolExecutor(max_workers=2) as both:
        before_read, after_read = both.submit(_state, vcs, source), both.submit(_state, vcs, staging)
        before, after = before_read.result(), after_read.result()
    if before != after:
        missing = sorted(set(before) - set(after))[:3]
        raise MoveError(f"the copy differs from the repository ({len(set(before) ^ set(after))} differences,"
                        f" e.g. {missing}); nothing was moved")
    return len(before)


def purge_moved(root: Path, *, grace: float = GRACE, now: Callable[[], float] = time.time) -> list[Path]:
    """Delete the old copies of moved repositories kept longer than ``grace``; the ones deleted."""
    kept = root / MOVED_DIR
    removed = []
    for old in sorted(kept.iterdir()) if kept.is_dir() else ():
        if now() - old.stat().st_mtime > grace:
            shutil.rmtree(old)
            removed.append(old)
    return removed
