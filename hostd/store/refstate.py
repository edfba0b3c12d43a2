"""A cheap fingerprint of a repository's refs, to know when a cached answer is stale.

Git: the ref advertisement (and everything derived from it) changes only when a
ref, ``HEAD``, ``packed-refs`` or the config changes. git and dulwich write
every one of those through a lock file renamed into place, so each change
replaces a file (new inode) in a directory (new mtime): the ``stat`` of
those files and of every directory under ``refs/`` changes with it. Reading
that costs one ``stat`` per directory, where recomputing the advertisement
reads every ref and forks git.

Directory children are remembered per directory: a directory whose mtime has
not moved has the same entries, so after the first look only directories are
``stat``-ed, never the (possibly 20,000) loose ref files in them.

A fingerprint taken within :data:`RACY_SECONDS` of the newest mtime in it is
*racy* (git's term for the same problem with its index): file timestamps
advance in clock ticks, so a second update inside the same tick could leave
every ``stat`` unchanged. Answers computed from a racy state are served but
not cached.

Mercurial (:class:`HgRefState`): what a page of a repository shows changes
only when its changelog (new or stripped changesets), bookmarks, phases
(secret changesets are not served), obsolescence markers (hidden ones are
not either) or local tags change; their ``stat`` is the fingerprint. The
changelog is appended to in place, so its size and mtime move with it.

Both live with the stores (the repositories on disk) so that the git pool
and the web pool can use them without importing each other.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hostd.store.memorycache import MemoryCache

RACY_SECONDS = 1.0
#: Directories whose children are remembered, over all repositories.
_MAX_DIRECTORIES = 100_000
#: Top-level files whose change can change what upload-pack advertises.
_FILES = ("HEAD", "packed-refs", "config", "shallow")

Stat = tuple[int, int, int]  # inode, size, mtime in ns


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the refs of one repository looked like at one moment."""

    stats: tuple[tuple[str, Stat | None], ...]
    newest: float

    def racy(self, now: float | None = None) -> bool:
        """Whether a change may have happened without moving any timestamp."""
        return (time.time() if now is None else now) - self.newest < RACY_SECONDS


def _stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class RefState:
    """Fingerprints of repositories' refs; one per process, shared by threads."""

    def __init__(self) -> None:
        self._children: dict[str, tuple[Stat, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def fingerprint(self, git_dir: Path) -> Fingerprint:
        root = str(git_dir)
        stats: list[tuple[str, Stat | None]] = [(name, _stat(os.path.join(root, name))) for name in _FILES]
        pending = [os.path.join(root, "refs")]
        while pending:
            directory = pending.pop()
            stat = _stat(directory)
            stats.append((directory, stat))
            if stat is not None:
                pending.extend(self._subdirectories(directory, stat))
        newest = max((stat[2] for _, stat in stats if stat is not None), default=0) / 1e9
        return Fingerprint(tuple(stats), newest)

    def _subdirectories(self, directory: str, stat: Stat) -> tuple[str, ...]:
        with self._lock:
            known = self._children.get(directory)
        if known is not None and known[0] == stat:
            return known[1]
        try:
            with os.scandir(directory) as entries:
                children = tuple(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return ()
        # A directory changed within the racy window may change again
        # without its mtime moving: look at it again next time.
        if time.time() - stat[2] / 1e9 >= RACY_SECONDS:
            with self._lock:
                if len(self._children) >= _MAX_DIRECTORIES:
                    self._children.clear()
                self._children[directory] = (stat, children)
        return children


#: Files of an hg repository (relative to it) whose change can change what is served. The branch
#: caches under ``.hg/cache`` are left out on purpose: they are derived from the changelog, and
#: a read that refreshes them would otherwise make the state look changed by the read itself.
_HG_FILES = (
    ".hg/requires", ".hg/store/requires", ".hg/store/00changelog.i", ".hg/store/00changelog.d",
    ".hg/store/00changelog.n", ".hg/bookmarks", ".hg/store/bookmarks", ".hg/store/phaseroots",
    ".hg/store/obsstore", ".hg/localtags",
)


class HgRefState:
    """Fingerprints of Mercurial repositories: the ``stat`` of the files in :data:`_HG_FILES`."""

    def fingerprint(self, repo_dir: Path) -> Fingerprint:
        root = str(repo_dir)
        stats = tuple((name, _stat(os.path.join(root, name))) for name in _HG_FILES)
        newest = max((stat[2] for _, stat in stats if stat is not None), default=0) / 1e9
        return Fingerprint(stats, newest)


class Fingerprinter(Protocol):
    """:class:`RefState` for git, :class:`HgRefState` for Mercurial."""

    def fingerprint(self, path: Path, /) -> Fingerprint: ...


class PerRefState:
    """Answers that depend on a repository's refs alone, computed once per ref state.

    A ref advertisement is the same for every request until a ref moves;
    this is where a persistent worker beats a fork per request. An answer is
    kept with the fingerprint taken before it was computed, and only if the
    fingerprint is the same afterwards and not racy, so a ref that moved
    meanwhile is never hidden behind it.
    """

    def __init__(self, memory: MemoryCache | None = None, refs: Fingerprinter | None = None) -> None:
        self.memory = memory or MemoryCache(budget=64 << 20, largest=16 << 20)
        self.refs: Fingerprinter = refs or RefState()

    def get(self, git_dir: Path, what: object, compute: Callable[[], bytes]) -> bytes:
        """``compute()`` for the repository ``git_dir``, or what it returned under the current ref state.

        ``what`` names the answer within the repository (any hashable value).
        """
        before = self.refs.fingerprint(git_dir)
        tag = hashlib.sha256(repr(before.stats).encode()).digest()
        key = (str(git_dir), what)
        cached = self.memory.get(key)
        if cached is not None and cached[:len(tag)] == tag:
            return cached[len(tag):]
        value = compute()
        if not before.racy() and self.refs.fingerprint(git_dir) == before:
            self.memory.put(key, tag + value)
        return value
