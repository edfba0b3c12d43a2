"""One procrastinate worker in a thread of a queue pool process, and the queue's housekeeping.

:class:`JobRunner` runs :data:`hostd.work.tasks.app`'s worker on an asyncio
loop of its own thread, so that the gunicorn worker around it
(hostd/work/pool.py) keeps answering its master and ``/healthz``::

    runner = JobRunner(settings, db)      # queues repos.<settings.shard> and hooks
    runner.start(on_exit=lambda: ...)     # called if the runner ever ends by itself
    ...
    runner.stop(timeout=25)               # graceful: no new job; the running ones finish (waited for 25 s)

PostgreSQL going away (a restart, a failover) ends procrastinate's worker;
the runner starts a new one as soon as the database answers again. A job
that was running meanwhile is finished if it can be, and otherwise run
again: its worker's heartbeat stopped.

Beside the worker, every heartbeat the runner does the queue's
housekeeping: jobs held by workers that stopped beating for
``stalled_after`` seconds go back to the queue (procrastinate leaves that
to its user), and a queue whose oldest waiting job is older than
``warn_age`` is logged as a warning, at every check until it catches up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import procrastinate
from procrastinate.exceptions import ProcrastinateException

from hostd.settings import Settings
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.queue import HOOKS_QUEUE, queue_stats, repo_queue
from hostd.work.tasks import Worksite, app

log = logging.getLogger(__name__)

#: Seconds between two tries to start a worker while PostgreSQL does not answer.
RESTART_PAUSE = 1.0
#: Jobs of the repositories' queue (a push's fan-out, a maintenance) one process runs at a time.
REPO_CONCURRENCY = 2


class JobRunner:
    """procrastinate's workers for this host's queues, restarted across database outages, with housekeeping."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        #: The queue of this host's shard's repositories, then the deliveries'.
        self.queues = [repo_queue(settings.shard), HOOKS_QUEUE]
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._problem: str | None = "not started"
        self.worksite = Worksite.build(settings, db)

    def problem(self) -> str | None:
        """None while a worker is registered and taking jobs; else why not (``/healthz``)."""
        if self._thread is None or not self._thread.is_alive():
            return "job runner not running"
        return self._problem

    def start(self, on_exit: Callable[[], None]) -> None:
        def main() -> None:
            try:
                asyncio.run(self._serve())
            except BaseException:
                log.exception("job runner failed")
            finally:
                on_exit()
        self._thread = threading.Thread(target=main, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Take no new job; wait up to ``timeout`` s for the running ones to finish."""
        self._stopping.set()
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stop_workers)
        if self._thread is not None:
            self._thread.join(timeout + 5.0)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Sync jobs run on the loop's default executor: one thread for each
        # job that may run at once, and some for the housekeeping.
        self._loop.set_default_executor(ThreadPoolExecutor(
            self.settings.background.concurrency + REPO_CONCURRENCY + 2, thread_name_prefix="job"))
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        try:
            while not self._stopping.is_set():
                try:
                    await self._work()
                except asyncio.CancelledError:
                    break  # the loop itself is going away
                except Exception as error:  # the database away, mostly: whatever it is, start again
                    self._problem = f"worker stopped: {type(error).__name__}: {error}"
                    log.warning("job runner: %s; starting again", self._problem)
                    await asyncio.sleep(RESTART_PAUSE)
        finally:
            housekeeping.cancel()

    def _stop_workers(self) -> None:
        """Cancel each procrastinate worker once: its graceful stop (no new job; the running ones finish).

        Once: a second cancellation would land in the middle of that graceful
        stop and cut the running jobs off.
        """
        for task in self._workers:
            if not task.done() and not task.cancelling():
                task.cancel()

    async def _work(self) -> None:
        background = self.settings.background
        connector = procrastinate.PsycopgConnector(
            conninfo=self.db.url, min_size=1, max_size=background.concurrency + REPO_CONCURRENCY + 3,
            kwargs={"connect_timeout": 2}, timeout=5)
        with app.replace_connector(connector):
            async with app.open_async():
                if self._stopping.is_set():
                    return
                # Two workers: deliveries to slow receivers never hold up a
                # push's fan-out or a maintenance, nor the other way round.
                self._workers = [asyncio.create_task(self._worker(queues, concurrency)) for queues, concurrency in (
                    (self.queues[:1], REPO_CONCURRENCY), (self.queues[1:], background.concurrency))]
                self._problem = None
                try:
                    # Each worker is stopped on its own and waited for (not
                    # gather: it would return when the first has stopped, and
                    # close the app under the other's running jobs). One that
                    # ends by itself (the database went away) stops the other.
                    done, running = await asyncio.wait(self._workers, return_when=asyncio.FIRST_COMPLETED)
                    self._stop_workers()
                    if running:
                        await asyncio.wait(running)
                    for task in done:
                        if not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                finally:
                    self._workers = []
                    if not self._stopping.is_set():
                        self._problem = "worker restarting"

    async def _worker(self, queues: list[str], concurrency: int) -> None:
        background = self.settings.background
        await app.run_worker_async(
            queues=queues, concurrency=concurrency, name=f"{queues[0]}-{os.getpid()}",
            install_signal_handlers=False, delete_jobs="successful",
            update_heartbeat_interval=background.heartbeat,
            # Retries come due without a notification: looked for as often as the heartbeat.
            fetch_job_polling_interval=background.heartbeat,
            stalled_worker_timeout=background.stalled_after,
            # No shutdown_graceful_timeout: a stopping worker waits for its
            # running jobs, however long. Sync jobs cannot be interrupted
            # anyway, and the process around it bounds the wait (gunicorn's
            # graceful_timeout).
            additional_context={"worksite": self.worksite},
        )

    async def _housekeeping(self) -> None:
        background = self.settings.background
        while True:
            await asyncio.sleep(background.heartbeat)
            try:
                await self._rescue_stalled()
                await asyncio.to_thread(self._warn_if_late)
            except (ProcrastinateException, DatabaseUnavailable) as error:
                log.debug("housekeeping skipped: %s", error)  # the database away: the next beat tries again
            except Exception:
                # Anything else is a bug, said once per beat, but never the
                # end of the housekeeping: stalled jobs must keep being rescued.
                log.exception("housekeeping failed")

    async def _rescue_stalled(self) -> None:
        if self._problem is not None:
            return  # no open app to ask with
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.settings.background.stalled_after)
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
            except ProcrastinateException:
                continue  # another worker was first
            log.warning("job %s (%s) of a worker that stopped beating runs again", job.id, job.task_name)

    def _warn_if_late(self) -> None:
        for line in queue_stats(self.db):
            if line.oldest_age > self.settings.background.warn_age:
                log.warning("queue %s is late: %d jobs waiting, the oldest for %.0f s (HOSTD_QUEUE_WARN_AGE=%g)",
                            line.queue, line.waiting, line.oldest_age, self.settings.background.warn_age)
