"""The push log: every accepted ref update, who made it and when.

Written by the git pool (dulwich's post-receive hook) and the hg pool (a
``txnclose`` hook) after the update is durable; read by ``hostd log``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hostd.names import RepoName
from hostd.store.database import Database


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


class PushLog:
    """Append-only push records in the account database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None:
        """Record ``(ref, old, new)`` updates of one push, in one transaction."""
        if not updates:
            return
        now = time.time()
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO pushlog (owner, name, username, at, ref, old, new) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(repo.owner, repo.name, username, now, ref, old, new) for ref, old, new in updates],
            )

    def entries(self, repo: RepoName, limit: int = 100) -> list[PushEntry]:
        """The newest ``limit`` entries for a repository, newest first."""
        rows = self.db.connection().execute(
            "SELECT username, at, ref, old, new FROM pushlog WHERE owner = ? AND name = ?"
            " ORDER BY id DESC LIMIT ?",
            (repo.owner, repo.name, limit),
        )
        return [PushEntry(repo, r["username"], r["at"], r["ref"], r["old"], r["new"]) for r in rows]
