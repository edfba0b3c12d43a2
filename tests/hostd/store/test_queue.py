"""Deferring jobs in the caller's transaction: they exist exactly when it commits."""

from __future__ import annotations

import pytest

from hostd.store.database import Database
from hostd.store.queue import MAINTAIN_TASK, defer, queue_stats


def _jobs(database: Database) -> list[tuple[str, str]]:
    with database.connection() as conn:
        return [(row["task_name"], row["queue_name"]) for row in conn.execute(
            "SELECT task_name, queue_name FROM procrastinate_jobs ORDER BY id").fetchall()]


def test_a_job_exists_only_if_its_transaction_commits(database: Database) -> None:
    with pytest.raises(RuntimeError), database.transaction() as conn:
        defer(conn, MAINTAIN_TASK, "repos.s1", repo="alice/notes")
        raise RuntimeError("the push-log write failed")
    assert _jobs(database) == []
    with database.transaction() as conn:
        assert defer(conn, MAINTAIN_TASK, "repos.s1", repo="alice/notes") is not None
    assert _jobs(database) == [(MAINTAIN_TASK, "repos.s1")]


def test_a_job_already_waiting_under_its_queueing_lock_leaves_the_rest_of_the_transaction_alone(
        database: Database) -> None:
    """The second defer is refused (None), and the transaction's other writes still commit."""
    with database.transaction() as conn:
        defer(conn, MAINTAIN_TASK, "repos.s1", queueing_lock="maintain:alice/notes", repo="alice/notes")
    with database.transaction() as conn:
        conn.execute("CREATE TABLE witness (n int)")
        assert defer(conn, MAINTAIN_TASK, "repos.s1", queueing_lock="maintain:alice/notes", repo="alice/notes") is None
        conn.execute("INSERT INTO witness VALUES (1)")
    with database.connection() as conn:
        assert conn.execute("SELECT n FROM witness").fetchall() == [{"n": 1}]
    assert _jobs(database) == [(MAINTAIN_TASK, "repos.s1")]
    (line,) = queue_stats(database)
    assert (line.queue, line.waiting) == ("repos.s1", 1)
