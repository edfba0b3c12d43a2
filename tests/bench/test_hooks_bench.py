"""The webhook benchmark's pure parts: matching deliveries to pushes, the tables, the rounds, the plans.

No stack is started and no timing is asserted; ``make bench`` runs the benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from tests.bench.hooks_bench import (
    FAST,
    GIT_PUSH,
    HG_PUSH,
    NONE,
    SIDES,
    SLOW,
    Bench,
    Lag,
    Plan,
    Pushed,
    delivery_lag,
    lag_table,
    parse_args,
    push_table,
)
from tests.bench.interference import Monitor, Span
from tests.bench.report import Results
from tests.e2e.hookfixture import Call

A, B, C = "a" * 40, "b" * 40, "c" * 40


def call(delivery: str, commits: list[str], at: float, extra: str = "") -> Call:
    body = json.dumps({"repository": {"name": "git-1"}, "commits": [{"id": c} for c in commits], "x": extra})
    return Call({"X-Hostd-Delivery": delivery}, body.encode(), at)


def test_each_push_is_matched_to_the_first_arrival_of_its_commit() -> None:
    pushes = [Pushed("git", FAST, A, 100.0), Pushed("git", FAST, B, 101.0)]
    calls = [call("d1", [A], 103.0), call("d1", [A], 100.05), call("d2", [B], 100.9)]  # a repeat; one before the exit
    lag = delivery_lag("git", FAST, pushes, calls)
    assert [round(ms) for ms in lag.lags] == [50, -100]
    assert (lag.pushes, lag.delivered, lag.ids, lag.calls, lag.problems) == (2, 2, 2, 3, [])


def test_a_lost_push_and_a_changed_body_are_problems() -> None:
    pushes = [Pushed("git", FAST, A, 100.0), Pushed("git", FAST, B, 100.0), Pushed("git", FAST, C, 100.0)]
    calls = [call("d1", [A], 100.1), call("d1", [A], 101.0, extra="changed"), call("d3", [C], 100.2)]
    lag = delivery_lag("git", FAST, pushes, calls)
    assert lag.delivered == 2 and len(lag.lags) == 2
    assert lag.problems == ["delivery d1 came with 2 different bodies", f"1 of 3 pushes not delivered, e.g. {B[:12]}",
                            "2 delivery ids for 3 pushes"]


def test_push_table_compares_each_hooked_side_with_no_hook_within_rounds() -> None:
    results = Results()
    for none, fast, slow in ((100.0, 104.0, 90.0), (200.0, 200.0, 260.0), (150.0, 150.0, 180.0)):
        results.new_round()
        for side, value in ((NONE, none), (FAST, fast), (SLOW, slow)):
            results.add(GIT_PUSH, side, value)
    lines = push_table(results, [GIT_PUSH, HG_PUSH]).splitlines()
    assert lines[0] == "| push | side | median ms | p95 ms | side / no hook | target | verdict | runs |"
    assert lines[2] == "| git | no hook | 150 | 200 | — | — | — | 3 |"
    assert lines[3] == "| git | hook, fast receiver | 150 | 200 | 1.00× | ≤ 1.05× | PASS | 3 |"
    assert lines[4] == "| git | hook, slow receiver | 180 | 260 | 1.20× | ≤ 1.05× | MISS | 3 |"
    assert lines[6] == "| hg | hook, fast receiver | — | — | — | ≤ 1.05× | not measured | 0 |"


def test_lag_table() -> None:
    rows = lag_table([Lag("git", FAST, [40.0, 50.0, 30.0], 3, 3, 3, 4, []),
                      Lag("hg", SLOW, [], 2, 0, 0, 0, ["2 of 2 pushes not delivered, e.g. x"])]).splitlines()
    assert rows[2] == "| git | hook, fast receiver | 40.00 | 50.00 | 50.00 | 3/3 | 3 | 4 | ok |"
    assert rows[3] == "| hg | hook, slow receiver | — | — | — | 0/2 | 0 | 0 | 2 of 2 pushes not delivered, e.g. x |"


def test_plans() -> None:
    assert parse_args([]).plan == Plan()
    quick = parse_args(["--quick"]).plan
    assert quick.runs < Plan().runs and quick.idle_runs < Plan().idle_runs and quick.hg
    assert parse_args(["--quick", "--runs", "3", "--no-hg"]).plan == Plan(runs=3, idle_runs=quick.idle_runs, hg=False,
                                                                           budget=quick.budget)


class Noisy:
    """A monitor stand-in: the next take reports a disturbed push when ``noisy`` is set."""

    def __init__(self) -> None:
        self.noisy = False

    def take(self) -> list[Span]:
        spans = [Span(wall=0.2, others=0.2 if self.noisy else 0.0)]
        self.noisy = False
        return spans


def test_rounds_alternate_abba_and_a_disturbed_round_is_taken_again() -> None:
    monitor = Noisy()
    nothing = cast(Any, None)
    bench = Bench(Plan(), nothing, nothing, cast(Monitor, monitor), {})
    seen = []
    for number, side in bench.rounds("git pushes", SIDES, 2):
        seen.append((number, side))
        bench.results.add(GIT_PUSH, side, 100.0 + number)
        monitor.noisy = number == 1
    assert seen == [(0, NONE), (0, FAST), (0, SLOW), (1, SLOW), (1, FAST), (1, NONE), (2, NONE), (2, FAST), (2, SLOW)]
    assert bench.results.samples[(GIT_PUSH, NONE)] == [100.0, 102.0]
    assert bench.results.remarks == ["git pushes: 1 disturbed round(s) taken again"]
    assert bench.disturbed == 1


def test_the_benchmark_is_in_make_bench() -> None:
    text = (Path(__file__).parent / "__main__.py").read_text()
    assert '"tests.bench.hooks_bench"' in text
