"""The push log: every accepted ref update, who made it and when.

Written by the git pool (after git's receive-pack reports the refs it
moved) and the hg pool (a ``txnclose`` hook) once the update is durable;
read by ``hostd log``. The refs have already moved when the entry is
written, so an entry PostgreSQL cannot take at that moment is kept in a
:class:`~hostd.store.spool.Spool` and written by the next push that
reaches the database: no accepted push goes unlogged.

With a ``queue`` (hostd/store/queue.py), each push's entries and its event
(a job of ``PUSH_TASK`` for the queue workers: webhooks, maintenance) are
written in one transaction, the kept ones too: no push loses its event, and
no event exists without its push.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from hostd.names import RepoName
from hostd.store.database import Connection, Database, DatabaseUnavailable
from hostd.store.queue import PUSH_TASK, defer
from hostd.store.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushEntry:
    """One ref that one push moved (``old``/``new`` are full hashes; a
    created ref has an all-zero ``old``, a deleted one an all-zero ``new``)."""

    repo: RepoName
    username: str
    at: float
    ref: str
    old: str
    new: str


#: Rows per INSERT: a statement takes at most 65535 parameters, seven per row.
CHUNK: Final = 1000


def _insert(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    conn.execute(f"INSERT INTO pushlog (owner, name, username, at, ref, old, new) VALUES {values}".encode(),
                 [value for row in rows for value in row])


class PushLog:
    """Append-only push records in the account database."""

    def __init__(self, db: Database, spool: Spool | None = None, *, queue: str | None = None) -> None:
        self.db = db
        self.spool = spool
        #: The queue each push's event goes to (that of the repositories' shard); None: no events.
        self.queue = queue

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None:
        """Record ``(ref, old, new)`` updates of one push, in one transaction.

        With a spool, a database that cannot be reached does not lose them:
        they are kept, and written (with their own time) after the next
        push's entry that reaches the database.
        """
        if not updates:
            return
        now = time.time()
        rows = [[repo.owner, repo.name, username, now, ref, old, new] for ref, old, new in updates]
        try:
            self._write(rows)
        except DatabaseUnavailable as error:
            if self.spool is None:
                raise
            kept = self.spool.put(rows)
            log.warning("push log: database unreachable (%s); %d entries of %s kept in %s until it is back",
                        error, len(rows), repo, kept)
            return
        self.drain()

    def drain(self) -> int:
        """Write the entries kept while the database could not be reached; how many pushes' worth."""
        if self.spool is None:
            return 0
        try:
            written = self.spool.drain(self._write)
        except DatabaseUnavailable as error:
            log.warning("push log: kept entries not written yet: %s", error)
            return 0
        if written:
            log.info("push log: wrote the entries of %d pushes kept while the database was away", written)
        return written

    def _write(self, rows: Sequence[Sequence[Any]]) -> None:
        """The rows of one push (kept ones keep their time), with its event if there is a queue."""
        chunks = [rows[start:start + CHUNK] for start in range(0, len(rows), CHUNK)]
        if len(chunks) == 1 and self.queue is None:
            # One statement, atomic on its own: a push costs one round trip.
            with self.db.connection() as conn:
                _insert(conn, chunks[0])
            return
        with self.db.transaction() as conn:  # the event, or a mirror push of thousands of refs
            for chunk in chunks:
                _insert(conn, chunk)
            if self.queue is not None:
                owner, name, username, at = rows[0][:4]
                defer(conn, PUSH_TASK, self.queue, event=str(uuid.uuid4()), repo=f"{owner}/{name}",
                      pusher=username, at=at, updates=[list(row[4:7]) for row in rows])

    def entries(self, repo: RepoName, limit: int = 100) -> list[PushEntry]:
        """The newest ``limit`` entries for a repository, newest first."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT username, at, ref, old, new FROM pushlog WHERE owner = %s AND name = %s"
                " ORDER BY id DESC LIMIT %s",
                (repo.owner, repo.name, limit),
            ).fetchall()
        return [PushEntry(repo, r["username"], r["at"], r["ref"], r["old"], r["new"]) for r in rows]
