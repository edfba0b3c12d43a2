"""Writes in flight: which repositories a live process is writing temporary files into.

A push writes its pack into git's quarantine, ``objects/tmp_objdir-incoming-*`` (dulwich,
without git: ``objects/tmp_pack_*``), while it is received, and a full clone
is copied to ``hostd-pack-cache/.tmp-*`` while it is sent. A
worker that dies mid-way (the OOM killer, gunicorn's timeout, an operator's
SIGKILL) leaves them behind, and no ``finally`` of its own runs. So each
such write registers itself here first, and whoever sees a writer die (the
gunicorn master's ``child_exit``, a pool starting, the end of any other
write) removes the temporary files of its repository at once, instead of
at the next ``hostd maintain`` (which stays the backstop, by file age).

Usage::

    registry = InFlight.of_run_dir(settings.run_dir)
    ticket = registry.begin(git_dir)
    try:
        ...  # receive the pack
    finally:
        ticket.end()          # and removes what dead writers left, if anything

    sweep(registry.directory)   # in the master, when a worker died

How a writer is known to be alive: its entry is a small file holding the
repository's path, on which it holds an ``flock`` for the whole write, from
before its temporary file exists until after it is renamed or removed. The
kernel drops the lock when the process dies, however it dies; there is no
PID to be reused and no clock to trust. (A push's git receive-pack does not
inherit the lock: it dies with its worker's pipes, without removing its
quarantine, which is then removed here; see :mod:`hostd.git.receive`.) A repository's temporary files are
removed only when no entry of that repository is locked: a write in flight
keeps all of them (its own file may be closed but not yet renamed into
place, dulwich's window between the two). The temporary files are listed
before the locks are checked, so a write that starts meanwhile registers
before its file exists and is either seen alive or its file is not listed.
Entries of dead writers whose repository is busy stay until the next sweep.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hostd.git.cache import PACK_CACHE_DIR

log = logging.getLogger(__name__)

#: What a write in flight leaves in a repository if it is killed.
#: (git's quarantine is ``tmp_objdir-incoming-*`` since git 2.34, ``incoming-*`` before.)
TEMPORARY = ("objects/tmp_objdir-incoming-*", "objects/incoming-*", "objects/tmp_pack_*", f"{PACK_CACHE_DIR}/.tmp-*")
#: The registry's directory inside the run directory.
DIRECTORY = "inflight"
_NEW = ".new-"
_counter = itertools.count()


def _key(git_dir: Path) -> str:
    return hashlib.sha256(os.fsencode(git_dir)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Ticket:
    """One write in flight; :meth:`end` it when its temporary file is gone or renamed.

    ``lock`` is a file object, not a bare descriptor: a ticket that is never
    ended (a response the server dropped unread) releases its lock when it
    is collected, and its entry then reads as a dead writer's.
    """

    registry: InFlight
    entry: Path
    lock: BinaryIO

    def end(self) -> None:
        """Unregister, then clean up after writers that died meanwhile."""
        try:
            self.entry.unlink(missing_ok=True)
        finally:
            self.lock.close()  # releases the flock
        sweep(self.registry.directory)


class InFlight:
    """The registry: one locked entry per write in flight, in ``directory`` (the pools' run directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def of_run_dir(cls, run_dir: Path) -> InFlight:
        """The registry of the pools sharing ``run_dir`` (``HOSTD_RUN_DIR``, 0700)."""
        return cls(run_dir / DIRECTORY)

    def begin(self, git_dir: Path) -> Ticket | None:
        """Register a write into ``git_dir``; None if the registry cannot be written (logged).

        A registry that cannot be written does not stop the push: it only
        decides how soon a killed write is cleaned up, and ``hostd maintain``
        still does that by age.
        """
        name = f"{_key(git_dir)}.{os.getpid()}.{next(_counter)}"
        new = self.directory / (_NEW + name)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            log.warning("in-flight registry %s: cannot register a write: %s", self.directory, error)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, os.fsencode(git_dir))
            # Only a locked entry with its path in it gets a name a sweep reads.
            os.rename(new, self.directory / name)
        except OSError as error:
            os.close(fd)
            new.unlink(missing_ok=True)
            log.warning("in-flight registry %s: cannot register a write: %s", self.directory, error)
            return None
        return Ticket(self, self.directory / name, os.fdopen(fd, "wb", buffering=0))


def sweep(directory: Path) -> list[Path]:
    """Remove the temporary files of repositories whose every registered writer has died.

    Returns the files removed. Never raises: it runs in the gunicorn master.
    """
    try:
        return _sweep(directory)
    except Exception:
        log.exception("in-flight registry %s: sweep failed", directory)
        return []


def _sweep(directory: Path) -> list[Path]:
    held: dict[Path, list[tuple[Path, int]]] = {}  # repository -> its dead entries, locked by us
    try:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(_NEW):
                continue
            dead = _lock_if_dead(directory / name)
            if dead is not None:
                held.setdefault(dead[0], []).append((directory / name, dead[1]))
        removed: list[Path] = []
        for git_dir, entries in held.items():
            candidates = [path for pattern in TEMPORARY for path in git_dir.glob(pattern)]
            if _busy(directory, git_dir, {entry.name for entry, _ in entries}):
                continue  # a live write may own any of them; the next sweep will see
            for path in candidates:
                try:
                    _remove(path)
                except FileNotFoundError:
                    continue
                removed.append(path)
                log.info("removed %s, left by a write that died", path)
            for entry, _ in entries:
                entry.unlink(missing_ok=True)
        return removed
    finally:
        for entries in held.values():
            for _, fd in entries:
                os.close(fd)


def _remove(path: Path) -> None:
    """Remove a temporary file, or a quarantine directory with what is in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _lock_if_dead(entry: Path) -> tuple[Path, int] | None:
    """(repository, locked descriptor) if the entry's writer is gone; None if it is alive or unreadable."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        git_dir = Path(os.fsdecode(os.read(fd, 4096)))
    except OSError:
        os.close(fd)
        return None
    if not git_dir.is_absolute():
        os.close(fd)
        return None
    return git_dir, fd


def _busy(directory: Path, git_dir: Path, ours: set[str]) -> bool:
    """Whether a live write into ``git_dir`` is registered (an entry locked by someone else).

    ``ours`` are the dead entries this sweep holds locked itself.
    """
    prefix = _key(git_dir) + "."
    for name in os.listdir(directory):
        if not name.startswith(prefix) or name in ours:
            continue
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False
