"""Retries: exponential backoff with jitter up to a ceiling, at once after a shutdown, bounded for surprises."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job

from hostd.work.backoff import RETRY, UNEXPECTED_ATTEMPTS, RetryLater, delay


@pytest.mark.parametrize("attempts", range(0, 25))
def test_delays_double_from_the_base_up_to_the_ceiling_with_jitter(attempts: int) -> None:
    step = min(86400.0, 10.0 * 2**attempts)
    delays = [delay(attempts, 10.0, 86400.0, random.Random(seed)) for seed in range(50)]
    assert all(step / 2 <= d <= step for d in delays)
    assert len(set(delays)) > 1  # jitter: a thundering herd is spread out


def test_the_ceiling_holds_for_absurd_attempt_counts() -> None:
    assert delay(10_000, 10.0, 86400.0) <= 86400.0


def _job(attempts: int) -> Job:
    return Job(id=1, queue="hooks", lock=None, queueing_lock=None, task_name="hostd.deliver", attempts=attempts)


def _seconds(exception: BaseException, attempts: int = 0) -> float | None:
    decision = RETRY.get_retry_decision(exception=exception, job=_job(attempts))
    if decision is None:
        return None
    return (decision.retry_at - datetime.now(decision.retry_at.tzinfo)).total_seconds()


def test_a_failed_delivery_comes_back_after_its_own_delay() -> None:
    seconds = _seconds(RetryLater("HTTP 502", 300.0))
    assert seconds is not None and 298 < seconds <= 300


def test_a_job_cut_off_by_a_shutdown_runs_again_at_once() -> None:
    seconds = _seconds(JobAborted())
    assert seconds is not None and seconds <= 0.5


def test_an_unexpected_error_is_retried_with_backoff_then_left_failed() -> None:
    seconds = _seconds(RuntimeError("database away"), attempts=3)
    assert seconds is not None and 40 <= seconds <= 80
    assert _seconds(RuntimeError("bug"), attempts=UNEXPECTED_ATTEMPTS) is None
