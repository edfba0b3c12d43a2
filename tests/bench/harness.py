"""What every scenario of the VCS benchmark works with: the plan, the sides, the rounds, prepared clients.

:class:`Bench` holds the sides, the client runner, the results and the
plan; :meth:`Bench.rounds` is how every scenario alternates the sides and
takes a disturbed round again.  The scenarios themselves are in
:mod:`tests.bench.scenarios` (and, by concern, :mod:`tests.bench.partial`
and :mod:`tests.bench.bigpush`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.clientops import Runner
from tests.bench.interference import Monitor, Span
from tests.bench.procmem import Footprint, ProcessTable
from tests.bench.report import FLOOR, OURS_POOL, OURS_TLS, REF_PLAIN, REF_TLS, Metric, Results, round_order
from tests.bench.sides import FloorHost, OursHost, RefHost, Side

GIT_SIDES = (OURS_TLS, REF_TLS, OURS_POOL, REF_PLAIN, FLOOR)
HTTP_SIDES = (OURS_TLS, REF_TLS, OURS_POOL, REF_PLAIN)
MIB = 1024 * 1024
#: Served repository names, the same on every host.
FLASK, CHANGING, LARGE, REFS, REFS_MAINTAIN, FLASK_HG, HG_PUSH = (
    "flask", "flask-changing", "large", "refs", "refs-maintain", "flask-hg", "hg-push")


@dataclass(frozen=True, slots=True)
class Plan:
    """How many runs of what; ``budgets`` are soft per-scenario time limits in seconds."""

    runs: int = 5
    #: Operations that take a second or less (no-op fetch and pull, the
    #: 50-commit pushes, the flask-sized clones) are over in the time a
    #: neighbour's burst lasts: one such burst moves a median of 5 by several
    #: percent, a median of 20 hardly.  A flask-sized clone is ~80% the
    #: client's own indexing (the local floor), so 5 runs cannot tell a 3%
    #: difference on the server's side from noise.
    quick_runs: int = 20
    #: The git/git-sized clones (6-8 s each) are the other place a median of
    #: 5 is too few: on the same code, two full runs gave the repeated clone
    #: through TLS 0.97x and 1.10x, with no CPU taken by others in either.
    large_runs: int = 9
    #: Each wrk run opens 8 new keep-alive connections, and the pool's gunicorn
    #: workers race to accept them.  Now and then all 8 land on one worker,
    #: which then serves at one core's rate (measured pool direct: ~500 req/s
    #: against 1,200-1,500 with any split, in 2 of 12 runs); one such run
    #: moves a median of 3, not a median of 5.
    wrk_runs: int = 5
    wrk_seconds: float = 5.0
    concurrent_clones: int = 32
    concurrent_runs: int = 3
    #: A 1 GiB push takes minutes here (the reference's: 146 s over HTTP/1.1,
    #: 186 s over HTTP/2, with others taking 1.25 cores), and its memory, not
    #: its time, is the question: one run per side and HTTP version.
    huge_runs: int = 1
    budgets: dict[str, float] = field(default_factory=dict)


@dataclass
class Bench:
    """Everything a scenario uses; the push clients are prepared once, on first use."""

    flask_git: Path
    large_git: Path | None
    refs_git: Path
    flask_hg: Path
    runner: Runner
    results: Results
    sides: dict[str, Side]
    ours: OursHost
    ref: RefHost
    floor: FloorHost
    work: Path
    plan: Plan
    ca: Path
    memory: dict[str, Callable[[ProcessTable], int]]
    monitor: Monitor
    #: Per TLS side, the serving processes by role, sampled during the 1 GiB push.
    footprints: dict[str, Callable[[ProcessTable], Footprint]] = field(default_factory=dict)
    main_ref: str = ""
    base: str = ""
    push_client: Path | None = None
    fifty: str = ""
    big: str = ""
    hg_push_client: Path | None = None
    hg_fifty: str = ""

    def rounds(self, scenario: str, sides: Sequence[str], runs: int, *,
               retake: bool = True) -> Iterator[tuple[int, Side]]:
        """(round, side): ``runs`` rounds of every side, in ABBA order (:func:`round_order`).

        A round in which other processes or the hypervisor took a noticeable
        share of a core from any timed operation (:mod:`tests.bench.interference`)
        is dropped, samples and all, and taken again: at most ``runs`` times
        per scenario, so a machine that is never quiet still ends.  Dropped
        rounds do not count against the scenario's budget; past the budget,
        the scenario stops at a round boundary.  Remarks say what was dropped.
        ``retake=False`` keeps every round (counted as disturbed in the
        remarks): for operations of minutes, where a neighbour's burst is a
        small share and taking a round again costs more than it buys.
        """
        budget = self.plan.budgets.get(scenario, float("inf"))
        start, dropped_seconds = time.monotonic(), 0.0
        kept = number = 0
        dropped: list[Span] = []
        kept_disturbed = 0
        while kept < runs:
            elapsed = time.monotonic() - start - dropped_seconds
            if kept > 0 and elapsed > budget:
                self.results.remarks.append(
                    f"{scenario}: stopped after {kept} of {runs} runs ({elapsed:.0f}s, budget {budget:.0f}s)")
                break
            mark, began = self.results.mark(), time.monotonic()
            self.results.new_round()
            self.monitor.take()
            for key in round_order(sides, number):
                yield number, self.sides[key]
            number += 1
            disturbed = [span for span in self.monitor.take() if span.disturbed]
            if disturbed and retake and len(dropped) < runs:
                self.results.rollback(mark)
                dropped.append(max(disturbed, key=lambda span: span.others / span.wall))
                dropped_seconds += time.monotonic() - began
                continue
            kept += 1
            kept_disturbed += bool(disturbed)
        if dropped:
            worst = ", ".join(f"{span.others:.2f} core-s in {span.wall:.2f} s" for span in dropped)
            self.results.remarks.append(
                f"{scenario}: {len(dropped)} round(s) taken again; others took {worst}"
                + (f"; {kept_disturbed} disturbed round(s) kept (limit of repeats reached)" if kept_disturbed else ""))
        elif kept_disturbed:
            self.results.remarks.append(f"{scenario}: {kept_disturbed} disturbed round(s) kept (not taken again)")

    def fail(self, scenario: str, metrics: Sequence[Metric], side: str, error: Exception) -> None:
        """A side could not do what a scenario asked: "failed" in its cells, the reason in the failures.

        For scenarios whose sides can fail on their own (a capability ours
        lacks yet): the other sides' rows still come out.
        """
        for metric in metrics:
            self.results.note(metric, side, "failed")
        self.results.failures.append(f"{scenario}, {side}: {error}")

    def scratch(self, name: str) -> Path:
        path = self.work / name
        if path.exists():
            shutil.rmtree(path)
        return path

    def prepare_git_push_client(self) -> Path:
        """A bare clone of the flask input holding 50 new commits (``fifty``) and a 100 MiB file (``big``)."""
        if self.push_client is None:
            client = self.scratch("push-client.git")
            self.runner.git("clone", "-q", "--bare", str(self.flask_git), str(client))
            self.fifty = self.runner.add_commits(client, "refs/heads/fifty", self.base, 50)
            self.big = self.runner.add_big_file(client, "refs/heads/big", self.base, 100 * MIB)
            self.push_client = client
        return self.push_client

    def prepare_hg_push_client(self) -> Path:
        """A clone of the flask hg input with 50 new commits on its tip."""
        if self.hg_push_client is None:
            client = self.scratch("hg-push-client")
            self.runner.hg("clone", "-q", str(self.flask_hg), str(client))
            self.hg_fifty = self.runner.add_hg_commits(client, 50, self.work / "hg-patches")
            self.hg_push_client = client
        return self.hg_push_client

    def fetch_client(self, name: str, source: Path, side: Side, repo: str) -> Path:
        """A local clone of the input whose origin is ``repo`` on ``side`` (as if cloned from it)."""
        client = self.scratch(name)
        self.runner.git("clone", "-q", "--no-checkout", str(source), str(client))
        self.runner.git("-C", str(client), "remote", "set-url", "origin", side.git_url(repo))
        return client


def clone_args(side: Side, url: str, target: Path) -> list[str]:
    """A full clone without checkout: the server's work and the client's, not the disk's."""
    return ["clone", "-q", "--no-checkout", *(["--no-local"] if side.key == FLOOR else []), url, str(target)]
