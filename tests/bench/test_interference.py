"""How the benchmark tells a disturbed operation from a quiet one, and drops the rounds it disturbed.

The counters' parsing and the verdict are pure; the cgroup accounting is
checked for real in a child process (it moves itself into a cgroup), with a
busy neighbour outside it and busy work of its own inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from hostd.settings import PROJECT_ROOT
from tests.bench import harness
from tests.bench.interference import (
    Monitor,
    Reading,
    cgroup2_mount,
    disturbed,
    parse_cpu_stat,
    parse_proc_stat,
    taken,
)
from tests.bench.report import Metric, Results
from tests.bench.sides import Side

PROC_STAT = """cpu  1708931 0 564552 2826781 31003 0 28199 40013 0 0
cpu0 739762 0 265281 1557523 3920 0 13362 19689 0 0
intr 1 2 3
"""


def test_parse_proc_stat_counts_task_time_and_steal_not_interrupts() -> None:
    busy, steal = parse_proc_stat(PROC_STAT, 100)
    assert busy == pytest.approx((1708931 + 0 + 564552) / 100)
    assert steal == pytest.approx(400.13)
    assert parse_proc_stat("cpu  10 0 10 5 0 0 0\n", 100) == (0.2, 0.0)  # an old kernel: no steal column
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2\n", 100)


def test_parse_cpu_stat() -> None:
    assert parse_cpu_stat("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n") == 2.5
    with pytest.raises(ValueError):
        parse_cpu_stat("user_usec 1\n")


@pytest.mark.parametrize(("before", "after", "others"), [
    (Reading(10.0, 1.0, 5.0), Reading(12.0, 1.0, 7.0), 0.0),  # all the busy time was ours
    (Reading(10.0, 1.0, 5.0), Reading(13.0, 1.0, 7.0), 1.0),  # a neighbour took a core-second
    (Reading(10.0, 1.0, 5.0), Reading(12.0, 1.5, 7.0), 0.5),  # the hypervisor stole half a second
    (Reading(10.0, 1.0, 5.0), Reading(11.98, 1.0, 7.0), 0.0),  # tick rounding below our own usage
    (Reading(10.0, 1.0, None), Reading(19.0, 1.25, None), 0.25),  # no cgroup: steal only
], ids=["quiet", "neighbour", "steal", "rounding", "no-cgroup"])
def test_taken(before: Reading, after: Reading, others: float) -> None:
    assert taken(before, after) == pytest.approx(others)


@pytest.mark.parametrize(("wall", "others", "verdict"), [
    (5.0, 0.4, False),  # under a tenth of a core
    (5.0, 0.6, True),
    (0.1, 0.04, False),  # a few ticks: accounting noise
    (0.1, 0.06, True),
    (0.0001, 0.06, True),
], ids=["long-quiet", "long-disturbed", "short-noise", "short-disturbed", "instant"])
def test_disturbed(wall: float, others: float, verdict: bool) -> None:
    assert disturbed(wall, others) is verdict


class ScriptedMonitor(Monitor):
    """A monitor whose counters are a script: steal grows by the next amount during each span."""

    def __init__(self, thefts: list[float]) -> None:
        super().__init__(None)
        self.thefts = iter(thefts)
        self.steal = 0.0
        self.inside = False

    def read(self) -> Reading:
        if self.inside:
            self.steal += next(self.thefts)
        self.inside = not self.inside
        return Reading(0.0, self.steal, None)


METRIC = Metric("g", "row")


def scripted_bench(thefts: list[float], budgets: dict[str, float] | None = None) -> harness.Bench:
    """A Bench with only what ``rounds`` uses: two sides, results, a plan, a scripted monitor."""
    nothing = cast(Any, None)
    return harness.Bench(flask_git=Path(), large_git=None, refs_git=Path(), flask_hg=Path(), runner=nothing,
                    results=Results(), sides={key: Side(key, nothing, False) for key in "ab"}, ours=nothing,
                    ref=nothing, floor=nothing, work=Path(), plan=harness.Plan(budgets=budgets or {}), ca=Path(),
                    memory={}, monitor=ScriptedMonitor(thefts))


def take_rounds(bench: harness.Bench, runs: int, *, retake: bool = True) -> list[tuple[int, str]]:
    """Run ``runs`` rounds of sides a and b, each a timed no-op whose sample is the round's number."""
    order = []
    for number, side in bench.rounds("s", "ab", runs, retake=retake):
        with bench.monitor.span():
            pass
        bench.results.add(METRIC, side.key, number)
        bench.results.add(Metric("g", f"only in round {number}"), side.key, 1.0)
        order.append((number, side.key))
    return order


def test_a_disturbed_round_is_dropped_and_taken_again() -> None:
    bench = scripted_bench([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert take_rounds(bench, 2) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    # Round 0 is gone, every sample of it (and a metric only it measured).
    assert bench.results.samples[(METRIC, "a")] == bench.results.samples[(METRIC, "b")] == [1, 2]
    assert (Metric("g", "only in round 0"), "a") not in bench.results.samples
    # What is kept stays tagged with its round, so the sides are compared round by round.
    assert bench.results.rounds[(METRIC, "a")] == bench.results.rounds[(METRIC, "b")] == [2, 3]
    assert bench.results.remarks == ["s: 1 round(s) taken again; others took 1.00 core-s in 0.00 s"]


def test_repeats_are_bounded_and_then_disturbed_rounds_are_kept() -> None:
    bench = scripted_bench([1.0] * 8)
    assert [number for number, _key in take_rounds(bench, 2)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert bench.results.samples[(METRIC, "a")] == [2, 3]
    assert bench.results.remarks[0].endswith("2 disturbed round(s) kept (limit of repeats reached)")


def test_without_retakes_disturbed_rounds_are_kept_and_said_so() -> None:
    bench = scripted_bench([1.0, 0.0, 0.0, 0.0])
    assert take_rounds(bench, 2, retake=False) == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]
    assert bench.results.samples[(METRIC, "a")] == [0, 1]
    assert bench.results.remarks == ["s: 1 disturbed round(s) kept (not taken again)"]


def test_quiet_rounds_are_all_kept() -> None:
    bench = scripted_bench([0.0] * 6)
    assert len(take_rounds(bench, 3)) == 6
    assert bench.results.samples[(METRIC, "b")] == [0, 1, 2]
    assert bench.results.remarks == []


def test_the_budget_stops_at_a_round_boundary() -> None:
    bench = scripted_bench([0.0] * 6, budgets={"s": -1.0})
    assert take_rounds(bench, 3) == [(0, "a"), (0, "b")]
    assert bench.results.remarks == ["s: stopped after 1 of 3 runs (0s, budget -1s)"]


CHILD = """
import json, subprocess, sys, time
from pathlib import Path
from tests.bench.interference import Monitor, OwnCgroup, parse_proc_stat
busy = lambda: parse_proc_stat(Path("/proc/stat").read_text(), monitor.ticks_per_second)[0]
burn = "import time\\nend = time.process_time() + {seconds}\\nwhile time.process_time() < end: pass"
neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # before: outside the cgroup
cgroup = OwnCgroup.enter()
assert cgroup is not None
monitor = Monitor(cgroup)
try:
    with monitor.span() as beside:
        time.sleep(1.0)
    neighbour.kill()
    neighbour.wait()
    start, machine = cgroup.usage(), busy()
    with monitor.span() as own:
        subprocess.run([sys.executable, "-c", burn.format(seconds=0.5)], check=True)
    used, machine = cgroup.usage() - start, busy() - machine
finally:
    cgroup.leave()
print(json.dumps({"beside": beside.others, "beside_disturbed": beside.disturbed, "own": own.others,
                  "used": used, "machine": machine, "path": str(cgroup.path)}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or cgroup2_mount() is None, reason="needs root and a cgroup2 mount")
def test_own_cgroup_counts_what_it_started_and_not_a_neighbour() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    seen = json.loads(result.stdout)
    # A busy loop outside the cgroup ran for the whole second on one of the two cores.
    assert seen["beside"] >= 0.5 and seen["beside_disturbed"]
    # Half a second of CPU by a child inside the cgroup is the benchmark's own, not a neighbour's: of
    # what the whole machine did meanwhile, the half second is not in "others" (whatever the
    # neighbours of a shared machine did, which is in it, rightly).
    assert seen["used"] >= 0.45
    assert seen["machine"] - seen["own"] >= 0.4
    assert not Path(seen["path"]).exists()
