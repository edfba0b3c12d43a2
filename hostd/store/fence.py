"""The push fence: a push holds its repository's lock shared, a move holds it alone.

Every push (git receive-pack, hg unbundle or pushkey) holds a shared
``flock`` on a file inside its repository for as long as it runs
(:class:`PushFence`, taken by :class:`hostd.guard.shard.ShardGate`); many
pushes hold it at once. ``hostd repo move`` takes it exclusively
(:func:`exclusive`) once it has made the repository read-only: it waits for
the pushes already running to finish, and no push starts while it syncs the
last changes and moves the directory away::

    fence = PushFence.enter(repo_dir, "git")   # Fenced: the repository is not here now
    try: ...push...
    finally: fence.release()

    with exclusive(repo_dir, "git", timeout=60): ...final sync, rename...

The fence does not trust what a pool has cached: a push that got past the
read-only check just before a move began, and waited for the lock while the
move ran, finds the directory gone from under its path when it gets the
lock, and is refused (:class:`Fenced`) instead of writing to a copy nobody
serves any more. So no push is lost to a move, whatever the caches said.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

#: The lock's file name, in a bare git repository and in an hg repository's ``.hg``.
#: Not ``*.lock``: a file of that name is git's sign of an interrupted ref update.
LOCK_NAME: Final = "hostd-push-fence"
#: Seconds a push waits for a move's final sync (its read-only window is a few seconds).
PUSH_WAIT: Final = 30.0
_POLL: Final = 0.02


class Fenced(Exception):
    """The repository is not (or no longer) at this path, or stayed locked: refuse the push."""


def lock_path(repo_dir: Path, vcs: str) -> Path:
    """Where a repository's fence lives: git ignores unknown files in a bare repository, hg in ``.hg``."""
    return repo_dir / LOCK_NAME if vcs == "git" else repo_dir / ".hg" / LOCK_NAME


class PushFence:
    """A push's shared hold on its repository (:meth:`enter`), until :meth:`release`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def enter(cls, repo_dir: Path, vcs: str, *, wait: float = PUSH_WAIT) -> PushFence:
        """Hold the repository shared; Fenced if it is not there, moved away meanwhile, or locked past ``wait``."""
        path = lock_path(repo_dir, vcs)
        fd = _open(path)
        try:
            if not _acquire(fd, fcntl.LOCK_SH, wait):
                raise Fenced(f"{repo_dir} stayed locked for {wait:.0f} s")
            if not _same_file(fd, path):
                raise Fenced(f"{repo_dir} moved away while the push waited")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        """Let a move have the repository (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


@contextmanager
def exclusive(repo_dir: Path, vcs: str, *, timeout: float) -> Iterator[None]:
    """Hold the repository alone: wait (up to ``timeout``, else TimeoutError) for every push to end."""
    fd = _open(lock_path(repo_dir, vcs))
    try:
        if not _acquire(fd, fcntl.LOCK_EX, timeout):
            raise TimeoutError(f"pushes to {repo_dir} were still running after {timeout:.0f} s")
        yield
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        raise Fenced(f"no repository at {path.parent}") from None


def _acquire(fd: int, kind: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file ``fd`` is open on (not renamed or replaced meanwhile)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
