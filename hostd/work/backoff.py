"""When a failed job runs again: exponential backoff with jitter, and at once after a shutdown.

:data:`RETRY` is the retry strategy of every hostd task. A delivery that
failed raises :class:`RetryLater` with the delay :func:`delay` gives it
(its own attempt count and the ``HOSTD_HOOK_RETRY_*`` settings); a job cut
off by its worker's graceful shutdown runs again at once, elsewhere; any
other error (the database away, a bug) is retried with a backoff of its own,
up to :data:`UNEXPECTED_ATTEMPTS` times, then left failed for the operator
(``hostd queue status`` counts it)::

    @blueprint.task(name="hostd.deliver", retry=RETRY)
    def deliver(...):
        ...
        raise RetryLater("HTTP 502", delay(attempts, base=10, ceiling=86400))
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Final

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job

#: Retries of a job failing with an unexpected error, 10 s doubling to an hour.
UNEXPECTED_ATTEMPTS: Final = 30


class RetryLater(Exception):
    """The job failed in a way worth trying again, after ``seconds``."""

    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.seconds = seconds


def delay(attempts: int, base: float, ceiling: float, rand: random.Random | None = None) -> float:
    """Seconds before the next try, after ``attempts`` failed ones: ``base`` doubling, at most ``ceiling``.

    Full jitter on the upper half (a delay of 0.5 to 1 times the step), so
    the deliveries of many pushes to one receiver that was down do not all
    come back at the same moment.
    """
    step = min(ceiling, base * 2.0 ** min(attempts, 62))
    return step * (0.5 + 0.5 * (rand or random).random())


class Backoff(BaseRetryStrategy):
    """hostd's one retry strategy (see the module docstring)."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetryLater):
            return _after(exception.seconds)
        if isinstance(exception, JobAborted):
            return _after(0.0)  # cut off by a shutdown: not the job's fault
        if job.attempts >= UNEXPECTED_ATTEMPTS:
            return None
        return _after(delay(job.attempts, 10.0, 3600.0))


def _after(seconds: float) -> RetryDecision:
    return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=seconds))


RETRY: Final = Backoff()
