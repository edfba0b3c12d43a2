"""Caches of upload-pack answers: small ones in memory, full-clone packs on disk.

Both are keyed by what determines the answer byte for byte: the ref state
(the digest of the repository's ref advertisement), the protocol version
and the request body (its wants, capabilities and options). A key never
names a wall-clock time or a worker, so any worker, on any host sharing the
storage, can use what another one wrote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from hostd.store.memorycache import MemoryCache

log = logging.getLogger(__name__)

#: Directory inside a bare repository holding its cached packs. git ignores
#: unknown entries of ``$GIT_DIR``; ``hostd maintain`` empties it.
PACK_CACHE_DIR = "hostd-pack-cache"


def cache_key(*parts: bytes) -> str:
    """A file-name-safe digest of ``parts`` (length-prefixed, so no two splits collide)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class PackCache:
    """Full-clone upload-pack responses kept as files inside the repository.

    CI fleets clone the same state over and over; git would enumerate and
    compress the same objects every time. Files are written under a
    temporary name and renamed into place, once on disk, only when git has
    finished successfully, so a reader never sees a partial response, not
    even after a crash. At most ``keep`` responses per repository are kept,
    the most recently used.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep

    def open(self, git_dir: Path, key: str) -> BinaryIO | None:
        path = git_dir / PACK_CACHE_DIR / key
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the response closes it
        except OSError:
            return None
        try:
            os.utime(path)  # most recently used: last to be evicted
        except OSError:
            pass
        return handle

    def writer(self, git_dir: Path, key: str) -> PackWriter | None:
        directory = git_dir / PACK_CACHE_DIR
        try:
            directory.mkdir(exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        except OSError as error:
            log.warning("pack cache: cannot write in %s: %s", directory, error)
            return None
        return PackWriter(os.fdopen(fd, "wb"), Path(temp), directory / key, self)

    def evict(self, directory: Path) -> None:
        """Remove all but the ``keep`` most recently used responses."""
        try:
            entries = [entry for entry in os.scandir(directory) if not entry.name.startswith(".")]
        except OSError:
            return
        entries.sort(key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
        for entry in entries[self.keep:]:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


class PackWriter:
    """One response being copied to the pack cache while it is sent."""

    def __init__(self, handle: BinaryIO, temp: Path, final: Path, cache: PackCache) -> None:
        self._handle = handle
        self._temp = temp
        self._final = final
        self._cache = cache
        self._failed = False

    def write(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            self._handle.write(data)
        except OSError as error:  # a full disk must not fail the clone itself
            log.warning("pack cache: write failed, not caching: %s", error)
            self._failed = True

    def commit(self) -> None:
        """Publish the response under its key."""
        try:
            try:
                if self._failed:
                    raise OSError("an earlier write failed")
                # On disk before it has a name: after a crash, a renamed but unwritten file
                # (empty, or cut short) would be served as every later clone of this state.
                self._handle.flush()
                os.fsync(self._handle.fileno())
            finally:
                self._handle.close()
            os.replace(self._temp, self._final)
        except OSError:
            self._temp.unlink(missing_ok=True)
            return
        self._cache.evict(self._final.parent)

    def abort(self) -> None:
        self._handle.close()
        self._temp.unlink(missing_ok=True)


class Keeper(Protocol):
    """Where a response being sent is also kept, if it completes."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Ticket(Protocol):
    """A registration that something is being written (:class:`hostd.git.inflight.Ticket`)."""

    def end(self) -> None: ...


class Registered:
    """A keeper whose write is registered in flight (:mod:`hostd.git.inflight`) until it commits or aborts."""

    def __init__(self, keeper: Keeper, ticket: Ticket) -> None:
        self._keeper = keeper
        self._ticket = ticket

    def write(self, data: bytes) -> None:
        self._keeper.write(data)

    def commit(self) -> None:
        try:
            self._keeper.commit()
        finally:
            self._ticket.end()

    def abort(self) -> None:
        try:
            self._keeper.abort()
        finally:
            self._ticket.end()


class MemoryKeeper:
    """Collects a small response (an ``ls-refs``) for the memory cache."""

    def __init__(self, cache: MemoryCache, key: str) -> None:
        self._cache = cache
        self._key = key
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size <= self._cache.largest:
            self._parts.append(data)

    def commit(self) -> None:
        if self._size <= self._cache.largest:
            self._cache.put(self._key, b"".join(self._parts))

    def abort(self) -> None:
        self._parts.clear()
