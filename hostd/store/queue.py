"""The durable queue: procrastinate's jobs, in hostd's own PostgreSQL.

A job is a row of ``procrastinate_jobs`` (migration 0007), so it is as
durable as the push log: it is inserted in the same transaction as the rows
that make it due, and survives the death of any process. The queue workers
(hostd/work) run the jobs; this module only defers them and reads the
queue's state, so the pools that push need nothing of the workers::

    with db.transaction() as conn:
        conn.execute("INSERT INTO pushlog ...")
        defer(conn, PUSH_TASK, repo_queue("default"), repo="alice/notes", ...)

    for line in queue_stats(db):       # hostd queue status, /metrics
        print(line.queue, line.waiting, line.oldest_age)

Queues: the jobs that read a repository (a push's event, its maintenance)
go to the queue of the repository's shard, ``repos.<shard>``, which only
that shard's hosts work; webhook deliveries go to ``hooks``, worked
anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from hostd.store.database import Connection, Database

PUSH_TASK: Final = "hostd.push"
DELIVER_TASK: Final = "hostd.deliver"
MAINTAIN_TASK: Final = "hostd.maintain"
HOOKS_QUEUE: Final = "hooks"

#: Defers only, always on a connection the caller holds (``connection=``,
#: procrastinate 3.10's external-connection defer): never opened, no pool.
_DEFERRER: Final = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())


def repo_queue(shard: str) -> str:
    """The queue of the jobs that need the repositories of ``shard`` on disk."""
    return f"repos.{shard}"


def defer(conn: Connection, task: str, queue: str, *, lock: str | None = None,
          queueing_lock: str | None = None, **args: Any) -> int | None:
    """Insert a job in ``conn``'s transaction: it exists exactly when that transaction commits.

    ``lock``: jobs sharing it run one at a time. ``queueing_lock``: at most
    one such job waits at a time; deferring a second returns None.
    """
    configured = _DEFERRER.configure_task(name=task, queue=queue, lock=lock, queueing_lock=queueing_lock,
                                          connection=conn)
    try:
        # A savepoint: a job already waiting under ``queueing_lock`` is a
        # unique violation, which would otherwise abort the caller's whole
        # transaction (and with it whatever else it wrote, silently).
        with conn.transaction():
            return configured.defer(**args)
    except AlreadyEnqueued:
        return None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's state, as ``hostd queue status`` and ``/metrics`` show it."""

    queue: str
    #: Jobs due now and not started (their ``scheduled_at``, if any, has come).
    waiting: int
    #: Seconds the oldest waiting job has been due; 0 when none waits.
    oldest_age: float
    #: Jobs a worker holds now.
    running: int
    #: Jobs waiting for a later time (retries backing off).
    scheduled: int
    #: Jobs that gave up (their last attempt failed and no retry is left).
    failed: int


_STATS = """
SELECT job.queue_name AS queue,
       count(*) FILTER (WHERE due) AS waiting,
       coalesce(extract(epoch FROM now() - min(since) FILTER (WHERE due)), 0)::float8 AS oldest_age,
       count(*) FILTER (WHERE job.status = 'doing') AS running,
       count(*) FILTER (WHERE job.status = 'todo' AND NOT due) AS scheduled,
       count(*) FILTER (WHERE job.status = 'failed') AS failed
  FROM procrastinate_jobs job
  CROSS JOIN LATERAL (
      SELECT job.status = 'todo' AND (job.scheduled_at IS NULL OR job.scheduled_at <= now()) AS due) d
  LEFT JOIN LATERAL (
      SELECT greatest(job.scheduled_at, (SELECT min(at) FROM procrastinate_events event
                                          WHERE event.job_id = job.id AND event.type = 'deferred')) AS since
       WHERE d.due) s ON true
 WHERE job.status IN ('todo', 'doing', 'failed')
 GROUP BY job.queue_name
 ORDER BY job.queue_name
"""


def queue_stats(db: Database) -> list[QueueStats]:
    """Every queue that has a job waiting, running, backing off or failed."""
    with db.connection() as conn:
        rows = conn.execute(_STATS).fetchall()
    return [QueueStats(**row) for row in rows]


def live_workers(db: Database, within: float) -> int:
    """Queue workers whose last heartbeat is less than ``within`` seconds old."""
    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM procrastinate_workers"
                           " WHERE last_heartbeat > now() - make_interval(secs => %s)", (within,)).fetchone()
    return 0 if row is None else int(row["n"])
