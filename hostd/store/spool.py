"""Rows that could not reach the database yet, kept on disk until they can.

A push is accepted by git or hg before its push-log entry is written; if
PostgreSQL goes away in between, the refs have moved and the entry must not
be lost. :class:`Spool` keeps such rows in a directory of the host that
made them, one file per push, written whole (a temporary file, ``fsync``,
``rename``) so that a crash leaves either the complete file or none, and
hands them back to a writer later::

    spool = Spool(settings.pushlog_spool)
    spool.put(rows)            # the database is down
    spool.drain(write)         # later: write(rows) for every kept file, oldest first

Several processes may drain one spool at once: a file is claimed by
renaming it (only one rename of a name succeeds), written, then removed.
A claim whose process died is taken over after :data:`STALE_CLAIM`
seconds. Delivery is at least once: a process killed between the write
and the removal leaves the file to be written again.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

#: Seconds after which a claimed file whose claimant has not finished is taken over.
STALE_CLAIM: Final = 300.0
_READY, _CLAIMED, _WRITING = ".json", ".claimed", ".tmp"

Rows = list[list[Any]]


class Spool:
    """A directory of row batches waiting for their writer."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def __repr__(self) -> str:
        return f"<Spool {self.directory}>"

    def put(self, rows: Rows) -> Path:
        """Keep ``rows`` durably; returns the file they are in."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Names sort by time, so batches are written back in the order they came.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        writing = self.directory / (name + _WRITING)
        ready = self.directory / (name + _READY)
        with open(writing, "x", encoding="utf-8") as out:
            json.dump(rows, out)
            out.flush()
            os.fsync(out.fileno())
        writing.rename(ready)
        sync_directory(self.directory)
        return ready

    def pending(self) -> list[Path]:
        """The files waiting (claimed ones included), oldest first."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory)
                           if entry.name.endswith((_READY, _CLAIMED)))
        except FileNotFoundError:
            return []
        return [self.directory / name for name in names]

    def drain(self, write: Callable[[Rows], None]) -> int:
        """Hand every waiting batch to ``write``, oldest first; how many were written.

        Stops at the first batch ``write`` raises for (left waiting, the
        error raised): the database is down again, the rest can wait too.
        """
        written = 0
        for path in self.pending():
            claimed = self._claim(path)
            if claimed is None:
                continue  # another process has it
            try:
                rows = json.loads(claimed.read_text(encoding="utf-8"))
                write(rows)
            except BaseException:
                claimed.rename(claimed.with_suffix(_READY))  # waits for the next drain
                raise
            claimed.unlink()
            written += 1
        return written

    def _claim(self, path: Path) -> Path | None:
        claimed = path.with_suffix(_CLAIMED)
        if path.suffix == _CLAIMED:
            try:
                if self._clock() - path.stat().st_mtime < STALE_CLAIM:
                    return None
            except FileNotFoundError:
                return None
            log.warning("taking over %s: claimed over %d s ago and never finished", path.name, STALE_CLAIM)
            # Rename onto itself does not tell two takers apart: go through a new name.
            claimed = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}{_CLAIMED}")
        try:
            path.rename(claimed)
        except FileNotFoundError:
            return None
        os.utime(claimed)  # the claim's age starts now
        return claimed


def sync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable before the next step depends on them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
