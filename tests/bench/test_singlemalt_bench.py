"""Smoke test: part A of the singlemalt benchmark runs, with tiny counts.

Nothing here asserts a timing; the benchmark reports those.  What is checked
are the counters the issue's targets are about.
"""

from __future__ import annotations

import pytest

from singlemalt import PasswordHasher
from tests.bench import singlemalt_postgres
from tests.bench.singlemalt_bench import WARM_CASE, part_a, part_a_postgres
from tests.bench.singlemalt_inprocess import Limits, Result, run

TINY = Limits(requests=20, seconds=1.0, slow_requests=2, hung_requests=1)


@pytest.fixture(scope="module")
def results() -> list[Result]:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return run(TINY, hasher=cheap)


@pytest.fixture(scope="module")
def on_postgres() -> tuple[list[singlemalt_postgres.Result], str | None]:
    return singlemalt_postgres.run(TINY)


def test_every_case_runs(results: list[Result]) -> None:
    assert results[0].case == "bare app (baseline)"
    assert all(result.stats.count >= 1 for result in results)
    assert len({result.case for result in results}) == len(results)


def test_warm_cache_needs_no_slow_verification(results: list[Result]) -> None:
    by_case = {result.case: result for result in results}
    assert by_case[WARM_CASE].slow_per_request == 0
    assert by_case["Basic auth, in-process layer off (memcached hit)"].slow_per_request == 0
    assert by_case["memcached killed, cold in-process layer (local_ttl=0)"].slow_per_request == 1


def test_warm_cache_makes_no_memcached_round_trip_per_request(results: list[Result]) -> None:
    by_case = {result.case: result for result in results}
    # The locks are read once per login per 2 s (recheck), not once per request.
    assert by_case[WARM_CASE].memcached_ops_per_request < 0.5
    assert by_case["  same, locks read on every request"].memcached_ops_per_request == 1


def test_report_renders(results: list[Result]) -> None:
    text = part_a(results)
    assert "| case | requests | median µs |" in text
    assert WARM_CASE in text


def test_hostd_store_on_postgres_warm_requests_verify_and_query_nothing(
        on_postgres: tuple[list[singlemalt_postgres.Result], str | None]) -> None:
    results, problem = on_postgres
    assert problem is None  # the tests' cluster preloads pg_stat_statements
    assert [result.case for result in results][0] == singlemalt_postgres.OWNER_CASE
    for result in results:
        assert result.stats.count >= 1
        assert result.slow_per_request == 0
        if singlemalt_postgres.counterfactual(result):
            # Without the record cache every request reads its records: the count would see a regression.
            assert result.queries_per_request is not None and result.queries_per_request >= 2
        else:
            # Issue 17: users, repositories and grants come from the record cache when warm.
            assert result.queries_per_request == 0, result.statements


def test_postgres_report_renders(on_postgres: tuple[list[singlemalt_postgres.Result], str | None]) -> None:
    text = part_a_postgres(*on_postgres, baseline_us=1.0)
    assert "## A2. Warm authentication over hostd's store on PostgreSQL" in text
    assert singlemalt_postgres.OWNER_CASE in text
    assert "DB queries / req" in text
