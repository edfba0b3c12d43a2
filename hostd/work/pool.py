"""The queue pool: gunicorn processes that run procrastinate's worker, and say how the queues are doing.

The pool is one more gunicorn pool under the supervisor (``[program:queue]``
in deploy/supervisord.conf, its own process group), so it inherits what the
other pools have: a master that restarts a worker that dies or stops
answering (gunicorn's own heartbeat, ``timeout``), workers that stop when
the master dies (``deploy/gunicorn.conf.py``: the kernel's death signal and
the orphan watchdog), ``hostd reap`` for whatever survives that, and
SIGTERM for a graceful stop::

    gunicorn -c deploy/gunicorn.conf.py -k hostd.work.pool.QueueWorker \\
        --bind 127.0.0.1:8106 --name hostd-queue 'hostd.work.pool:queue_app()'

Each worker process (:class:`QueueWorker`) serves ``/metrics`` and
``/healthz`` on the pool's port, and runs a procrastinate worker in a thread
of its own (:class:`hostd.work.runner.JobRunner`): jobs of this host's
shard (``repos.<shard>``) and webhook deliveries (``hooks``). The runner
beats a heartbeat into ``procrastinate_workers``; the jobs of a worker that
stops beating (SIGKILL, a frozen host, a lost network) are run again by the
other workers. On SIGTERM a worker takes no new job and lets the running
ones finish (a delivery takes at most ``HOSTD_HOOK_TIMEOUT``); a job still
running when gunicorn's ``graceful_timeout`` is over (a long maintenance)
ends with the process, and runs again once its heartbeat is missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers.gthread import ThreadWorker
from webob import Response, exc

from hostd import logsetup
from hostd.guard.health import INSTANCE_HEADER, instance_id
from hostd.responses import text_error
from hostd.settings import Settings
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.queue import QueueStats, queue_stats
from hostd.work.runner import REPO_CONCURRENCY, JobRunner

StartResponse = Callable[..., Any]

_GAUGES = (
    ("waiting", "hostd_queue_waiting_jobs", "Jobs due and not started."),
    ("oldest_age", "hostd_queue_oldest_waiting_seconds", "Seconds the oldest waiting job has been due."),
    ("running", "hostd_queue_running_jobs", "Jobs a worker holds now."),
    ("scheduled", "hostd_queue_scheduled_jobs", "Jobs waiting for a later try (retries backing off)."),
    ("failed", "hostd_queue_failed_jobs", "Jobs that gave up."),
)


def metrics_text(stats: Iterable[QueueStats], queues: Iterable[str]) -> str:
    """Prometheus's text format: every gauge for every queue, ``queues`` listed even when empty."""
    by_queue = {line.queue: line for line in stats}
    for queue in queues:
        by_queue.setdefault(queue, QueueStats(queue, 0, 0.0, 0, 0, 0))
    lines = []
    for field, metric, help_text in _GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{queue="{queue}"}} {getattr(by_queue[queue], field):g}' for queue in sorted(by_queue)]
    return "\n".join(lines) + "\n"


class QueueApp:
    """The queue pool's ``/metrics``, ``/healthz`` and ``/readyz``, and the :class:`JobRunner` they describe."""

    def __init__(self, settings: Settings, *, instance: str | None = None) -> None:
        self.settings = settings
        #: This pool's data directory, named in /readyz (hostd.guard.health.instance_id).
        self.instance = instance
        background = settings.background
        # A connection for each job that may run at once, the housekeeping's and a scrape's.
        self.db = Database(settings.database, max_size=background.concurrency + REPO_CONCURRENCY + 2)
        self.runner = JobRunner(settings, self.db)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = self._answer(environ)
        answer.cache_control = "no-store"
        if self.instance is not None and environ.get("PATH_INFO") == "/readyz":
            answer.headers[INSTANCE_HEADER] = self.instance
        return answer(environ, start_response)  # type: ignore[no-any-return]

    def _answer(self, environ: dict[str, Any]) -> Response:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return text_error(exc.HTTPMethodNotAllowed, "GET or HEAD only")
        if path in ("/healthz", "/readyz"):  # the same here: this worker's job runner is running
            problem = self.runner.problem()
            return text_error(exc.HTTPOk, "ok") if problem is None else text_error(
                exc.HTTPServiceUnavailable, problem)
        if path == "/metrics":
            try:
                stats = queue_stats(self.db)
            except DatabaseUnavailable as error:
                return text_error(exc.HTTPServiceUnavailable, f"queue state unknown: {error}")
            return Response(body=metrics_text(stats, self.runner.queues).encode(),
                            headerlist=[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
        return text_error(exc.HTTPNotFound, "not found: /metrics, /healthz and /readyz are served here")


def queue_app(settings: Settings | None = None) -> QueueApp:
    """The pool's WSGI app (gunicorn loads it in each worker)."""
    logsetup.configure()
    # procrastinate logs every job's start and end, with its arguments, and a
    # traceback for each retry; hostd's jobs log one line of their own.
    # What it logs at WARNING and above (a job that failed for good, with its
    # traceback) is kept.
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    settings = settings or Settings.from_env()
    return QueueApp(settings, instance=instance_id(settings.instance_file))


class QueueWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's ``gthread`` worker, with the :class:`JobRunner` of its app beside its request loop."""

    def run(self) -> None:
        app = self.wsgi
        if not isinstance(app, QueueApp):
            raise TypeError("QueueWorker serves hostd.work.pool:queue_app() only")

        def stopped() -> None:
            self.alive = False  # the runner gave up: this process ends, the master starts another
        app.runner.start(on_exit=stopped)
        try:
            super().run()
        finally:
            app.runner.stop(timeout=max(1.0, self.cfg.graceful_timeout - 5.0))
