"""The push log: every accepted ref update, who made it and when.

Written by the git pool (dulwich's post-receive hook) and the hg pool (a
``txnclose`` hook) after the update is durable; read by ``hostd log``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from hostd.names import RepoName
from hostd.store.database import Connection, Database


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


def _insert(conn: Connection, rows: list[tuple[str, str, str, float, str, str, str]]) -> None:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    conn.execute(f"INSERT INTO pushlog (owner, name, username, at, ref, old, new) VALUES {values}".encode(),
                 [value for row in rows for value in row])


class PushLog:
    """Append-only push records in the account database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None:
        """Record ``(ref, old, new)`` updates of one push, in one transaction."""
        if not updates:
            return
        now = time.time()
        rows = [(repo.owner, repo.name, username, now, ref, old, new) for ref, old, new in updates]
        chunks = [rows[start:start + CHUNK] for start in range(0, len(rows), CHUNK)]
        if len(chunks) == 1:
            # One statement, atomic on its own: a push costs one round trip.
            with self.db.connection() as conn:
                _insert(conn, chunks[0])
            return
        with self.db.transaction() as conn:  # a mirror push of thousands of refs
            for chunk in chunks:
                _insert(conn, chunk)

    def entries(self, repo: RepoName, limit: int = 100) -> list[PushEntry]:
        """The newest ``limit`` entries for a repository, newest first."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT username, at, ref, old, new FROM pushlog WHERE owner = %s AND name = %s"
                " ORDER BY id DESC LIMIT %s",
                (repo.owner, repo.name, limit),
            ).fetchall()
        return [PushEntry(repo, r["username"], r["at"], r["ref"], r["old"], r["new"]) for r in rows]
