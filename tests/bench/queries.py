"""Issue 17: how many database queries a warm git clone, git fetch, hg clone and git push cost per HTTP request.

The ``queries`` scenario of the VCS benchmark.  Each operation runs twice
through HAProxy with TLS, as a user runs it (the stored password, private
repositories): once to warm every cache (the verification cache, the
record cache, the pools' connections), then again, counted.  Around the
counted run it reads:

- the statements PostgreSQL ran in the stack's database
  (:mod:`tests.bench.pgstats`, reset just before), split into the
  requests' own and background work (health checks' ``SELECT 1``,
  ``LISTEN``), which is listed but not counted;
- the HTTP requests the git and hg backends served (HAProxy's ``show stat``,
  ``req_tot`` of each backend), so 401 challenges count as requests too:
  they are requests a user's client makes.

The target (issue 17): at most one query per request when warm.  The
report gets a table (operation, requests, queries, queries per request,
which statements) and a row in the targets.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hostd.ops import haproxy
from hostd.settings import Settings
from tests.bench import pgstats
from tests.bench.common import BenchError, markdown_table
from tests.bench.harness import CHANGING, FLASK, FLASK_HG, Bench, clone_args
from tests.bench.report import OURS_TLS

HEADING = "Database queries per request, warm (issue 17)"
TARGET = "database queries per HTTP request, warm git clone, git fetch, hg clone and git push: ≤ 1 (issue 17)"
LIMIT = 1.0
#: The ref the counted push creates (and the benchmark deletes on disk, so the next push is the same).
PUSHED_REF = "refs/heads/bench-queries"


@dataclass(frozen=True, slots=True)
class Measured:
    """What one counted operation cost: HTTP requests, and the statements PostgreSQL ran."""

    operation: str
    requests: int
    statements: tuple[pgstats.Statement, ...]

    @property
    def queries(self) -> int:
        return pgstats.calls(self.statements)

    @property
    def per_request(self) -> float | None:
        return self.queries / self.requests if self.requests else None


def backend_requests(settings: Settings) -> int:
    """HTTP requests HAProxy's pool backends have served so far (health checks are not requests)."""
    rows = haproxy.stat(settings, types=haproxy.BACKENDS)
    return sum(int(row.get("req_tot") or 0) for row in rows if row.get("pxname") in haproxy.POOLS)


def settle(settings: Settings, timeout: float = 10.0) -> None:
    """Wait until no request is in progress in any pool backend: the counts are complete."""
    deadline = time.monotonic() + timeout
    while True:
        rows = haproxy.stat(settings, types=haproxy.BACKENDS)
        if all(int(row.get("scur") or 0) == 0 for row in rows if row.get("pxname") in haproxy.POOLS):
            return
        if time.monotonic() > deadline:
            raise BenchError("the pools still had requests in progress after the operation ended")
        time.sleep(0.05)


def count(settings: Settings, stats: pgstats.StatementStats, name: str, operation: Callable[[], None]) -> Measured:
    """Run ``operation`` once to warm up, then once counted."""
    operation()
    settle(settings)
    before = backend_requests(settings)
    stats.reset()
    operation()
    settle(settings)
    statements = stats.read()
    return Measured(name, backend_requests(settings) - before, tuple(statements))


def operations(bench: Bench) -> list[tuple[str, Callable[[], None]]]:
    """The operations counted, each repeatable as is (the push deletes what it pushed, on disk)."""
    side = bench.sides[OURS_TLS]
    runner = bench.runner
    push_client = bench.prepare_git_push_client()
    fetcher = bench.fetch_client("queries-fetch", bench.flask_git, side, FLASK)
    runner.git("-C", str(fetcher), "fetch", "-q", "origin")

    def git_clone() -> None:
        target = bench.scratch("queries-clone")
        runner.git(*clone_args(side, side.git_url(FLASK), target))
        shutil.rmtree(target)

    def git_fetch() -> None:
        runner.git("-C", str(fetcher), "fetch", "-q", "origin")

    def hg_clone() -> None:
        target = bench.scratch("queries-hg-clone")
        runner.hg("clone", "-U", "-q", side.hg_url(FLASK_HG), str(target))
        shutil.rmtree(target)

    def git_push() -> None:
        runner.git("-C", str(push_client), "push", "-q", side.git_url(CHANGING), f"refs/heads/fifty:{PUSHED_REF}")
        served = bench.ours.git_dir(CHANGING)
        if runner.rev(served, PUSHED_REF) != bench.fifty:
            raise BenchError("the counted push did not land")
        runner.git("--git-dir", str(served), "update-ref", "-d", PUSHED_REF)

    return [("git clone", git_clone), ("git fetch, no-op", git_fetch), ("hg clone", hg_clone),
            ("git push of 50 commits", git_push)]


def queries(bench: Bench) -> None:
    """The scenario: count each operation, then add the section and the target's verdict to the report."""
    settings = bench.ours.stack.settings
    stats = pgstats.StatementStats(settings.database)
    problem = stats.prepare()
    if problem is not None:
        bench.results.sections.append(f"## {HEADING}\n\nNot measured: {problem}.\n")
        bench.results.verdicts.append([TARGET, "—", "—", f"not measured ({problem})"])
        return
    measured = [count(settings, stats, name, operation) for name, operation in operations(bench)]
    bench.results.sections.append(section(measured))
    bench.results.verdicts.append([TARGET, "—", "—", verdict(measured)])


def section(measured: Sequence[Measured]) -> str:
    """The report's section: a row per operation, then how it was counted."""
    rows = [[m.operation, m.requests, m.queries, "—" if m.per_request is None else f"{m.per_request:.2f}",
             pgstats.describe(m.statements), pgstats.describe(m.statements, pgstats.BACKGROUND, width=40)]
            for m in measured]
    table = markdown_table(["operation (warm, through HAProxy TLS)", "HTTP requests", "queries",
                            "queries / request", "statements", "background, not counted"], rows)
    return (
        f"## {HEADING}\n\n{table}\n\n"
        "Each operation ran once to warm up, then once counted. Queries: the statements PostgreSQL ran in the "
        "stack's database during the counted run (`pg_stat_statements`, reset just before; the benchmark's own "
        "left out); background work (health checks' `SELECT 1`, `LISTEN`) is listed but not counted. HTTP "
        "requests: HAProxy's `req_tot` of the pool backends, before and after, 401 challenges included. "
        f"Target: at most {LIMIT:g} query per request.\n")


def verdict(measured: Sequence[Measured]) -> str:
    """met / NOT met, with the worst operation's figure."""
    counted = [m for m in measured if m.per_request is not None]
    if not counted:
        return "not measured (no request reached the pools)"
    worst = max(counted, key=lambda m: m.per_request or 0.0)
    figure = f"worst: {worst.operation}, {worst.queries} queries in {worst.requests} requests"
    return f"{'met' if (worst.per_request or 0.0) <= LIMIT else 'NOT met'} ({figure})"
