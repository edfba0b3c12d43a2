"""Webhook rows of ``make bench``: what a hook costs a push, and how soon its delivery arrives.

``python -m tests.bench.hooks_bench [--quick] [--runs N] [--no-hg] [--output FILE]``: one stack (``hook_stack``),
two loopback receivers (one answers at once, one after 10 s); per VCS, the real client's push of a fresh commit
over HTTPS through HAProxy to a repository without a hook, with a hook to each receiver, in ABBA order. A push
only inserts its job, so the targets are hooked / no hook ≤ 1.05. Also the delivery lag, and a check that every
push is on the server and delivered under one id. Exit status 0 when everything ran, 1 when something did not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

from hostd.settings import PROJECT_ROOT
from tests.bench.clientops import Runner
from tests.bench.common import BenchError, machine, markdown_table, traversable
from tests.bench.interference import Monitor, Span, run_in_cgroup
from tests.bench.report import Metric, Results, abba_rounds, format_ratio, format_value
from tests.bench.ssh_bench import nearest_rank, verdict, version
from tests.e2e.hookfixture import Call, Receiver, hook_stack
from tests.e2e.stackfixture import VENV_BIN, Stack
from tests.polling import wait_until

WORK = PROJECT_ROOT / "var" / "bench" / "hooks-run"
OWNER, PASSWORD = "bench", "bench correct horse battery"
NONE, FAST, SLOW = "no hook", "hook, fast receiver", "hook, slow receiver"
SIDES = (NONE, FAST, SLOW)
#: The lag rows of the pushes made while nothing else was queued.
IDLE = "hook, fast receiver, the queue otherwise idle"
#: How long the slow receiver takes to answer; the stack's hook timeout, so that its answer counts.
SLOW_SECONDS, HOOK_TIMEOUT = 10.0, 30.0
GIT_PUSH = Metric("git", "push of one commit over HTTPS (HAProxy)", "ms")
HG_PUSH = Metric("hg", "push of one commit over HTTPS (HAProxy)", "ms")
#: Each hooked side's push latency against the side without a hook, at most this.
TARGET = 1.05


@dataclass(frozen=True, slots=True)
class Plan:
    """Timed pushes per side and VCS, pushes per VCS with the queue idle, and how long (s) rounds may go on."""

    runs: int = 40
    idle_runs: int = 10
    hg: bool = True
    budget: float = 900.0  # per VCS, past which no new round starts
    drain: float = 300.0  # after the last push, for every delivery


PRESETS = {"full": Plan(), "quick": Plan(runs=8, idle_runs=4, budget=180.0)}


class Pushed(NamedTuple):  # one push: its side, its commit, when the client exited (time.time())
    vcs: str
    side: str
    commit: str
    end: float


@dataclass(frozen=True, slots=True)
class Side:
    """One repository as a client pushes to it (``url`` has the password) and its hook's receiver, if any."""

    key: str
    vcs: str
    name: str
    url: str
    clone: Path
    receiver: Receiver | None


class Lag(NamedTuple):  # a hooked side's lags (ms); pushes, delivered, ids, POSTs; what the check found wrong
    vcs: str
    side: str
    lags: list[float]
    pushes: int
    delivered: int
    ids: int
    calls: int
    problems: list[str]


@dataclass
class Bench:
    plan: Plan
    stack: Stack
    runner: Runner
    monitor: Monitor
    sides: dict[tuple[str, str], Side]
    results: Results = field(default_factory=Results)
    pushed: list[Pushed] = field(default_factory=list)
    lags: list[Lag] = field(default_factory=list)
    timed: int = 0
    disturbed: int = 0
    #: Seconds from the last timed push until every delivery had arrived (None: not all did).
    drained: float | None = None

    def take(self) -> list[Span]:  # the monitor's spans since the last call, counted
        spans = self.monitor.take()
        self.timed, self.disturbed = self.timed + len(spans), self.disturbed + sum(s.disturbed for s in spans)
        return spans

    def rounds(self, scenario: str, sides: Sequence[str], runs: int) -> Iterator[tuple[int, str]]:
        """(round, side): ``runs`` rounds of ``sides`` in ABBA order, a disturbed one taken again, within the plan's
        budget (:func:`tests.bench.report.abba_rounds`); only the rounds' pushes counted, not the warm-up's."""
        self.monitor.take()
        yield from abba_rounds(self.results, self.take, scenario, sides, runs, self.plan.budget)


def push(bench: Bench, side: Side, number: int) -> tuple[float, Pushed]:
    """A fresh commit of one new file (untimed), then the timed push of it: seconds, and what was pushed."""
    runner, clone, name = bench.runner, side.clone, f"push-{number}.txt"
    (clone / name).write_text(f"{side.key}: push {number}\n" * 20)
    if side.vcs == "git":
        runner.git("add", name, cwd=clone)
        runner.git("commit", "-q", "-m", f"bench: push {number}", cwd=clone)
        made = runner.git("rev-parse", "HEAD", cwd=clone).strip()
        seconds = runner.timed_git("push", "-q", "origin", "HEAD:main", cwd=clone)
    else:
        runner.hg("commit", "-A", "-q", "-m", f"bench: push {number}", cwd=clone)
        made = runner.hg("log", "-r", ".", "-T", "{node}", cwd=clone).strip()
        seconds = runner.timed_hg("push", "-q", side.url, cwd=clone)  # hg keeps no password in its paths
    done = Pushed(side.vcs, side.key, made, time.time())
    bench.pushed.append(done)
    return seconds, done


def scenario(bench: Bench, vcs: str, metric: Metric) -> None:
    """An untimed warm-up push per side (its delivery awaited), then the timed rounds."""
    for key in SIDES:
        side = bench.sides[(vcs, key)]
        _seconds, done = push(bench, side, 0)
        if side.receiver is not None:
            wait_until(f"{vcs} {key}: the warm-up push's delivery", arrived(side.receiver, {done.commit}), 60)
    for number, key in bench.rounds(f"{vcs} pushes", SIDES, bench.plan.runs):
        seconds, _done = push(bench, bench.sides[(vcs, key)], number + 1)
        bench.results.add(metric, key, seconds * 1000)


def arrived(receiver: Receiver, commits: set[str]) -> Callable[[], bool]:  # has it had a body listing each?
    return lambda: commits <= delivered_commits(receiver.answered())


def delivered_commits(calls: Sequence[Call]) -> set[str]:
    return {entry["id"] for call in calls for entry in call.payload.get("commits", [])}


def delivery_lag(vcs: str, side: str, pushes: Sequence[Pushed], calls: Sequence[Call]) -> Lag:
    """Each push's lag (the first arrival of a body listing its commit less the client's exit, in ms) and the
    check: one delivery id per push, the same body under an id every time it came."""
    first: dict[str, float] = {}
    bodies: dict[str, set[bytes]] = {}
    for call in sorted(calls, key=lambda c: c.at):
        bodies.setdefault(call.delivery, set()).add(call.body)
        for entry in call.payload.get("commits", []):
            first.setdefault(entry["id"], call.at)
    problems = [f"delivery {delivery} came with {len(sent)} different bodies"
                for delivery, sent in bodies.items() if len(sent) > 1]
    missing = [p.commit for p in pushes if p.commit not in first]
    if missing:
        problems.append(f"{len(missing)} of {len(pushes)} pushes not delivered, e.g. {missing[0][:12]}")
    if len(bodies) != len(pushes):
        problems.append(f"{len(bodies)} delivery ids for {len(pushes)} pushes")
    lags = [(first[p.commit] - p.end) * 1000 for p in pushes if p.commit in first]
    return Lag(vcs, side, lags, len(pushes), len(pushes) - len(missing), len(bodies), len(calls), problems)


def push_table(results: Results, metrics: Sequence[Metric]) -> str:
    """Per VCS and side: median, p95, hooked / no hook within rounds, the target, PASS or MISS."""
    rows: list[list[object]] = []
    for metric in metrics:
        for key in SIDES:
            values = results.samples.get((metric, key), [])
            ratio, target = (None, None) if key == NONE else (results.ratio(metric, key, NONE), TARGET)
            shown = [format_value(statistics.median(values), "ms"),
                     format_value(nearest_rank(values, 0.95), "ms")] if values else ["—", "—"]
            rows.append([metric.group, key, *shown,
                         "—" if target is None else format_ratio(ratio), "—" if target is None else f"≤ {target:g}×",
                         verdict(ratio, target), len(values)])
    return markdown_table(["push", "side", "median ms", "p95 ms", "side / no hook", "target", "verdict", "runs"], rows)


def lag_table(lags: Sequence[Lag]) -> str:
    """Per hooked side: the lag's median, p95 and maximum, and what the deliveries check found."""
    rows: list[list[object]] = []
    for lag in lags:
        shown = [format_value(statistics.median(lag.lags), "ms"), format_value(nearest_rank(lag.lags, 0.95), "ms"),
                 format_value(max(lag.lags), "ms")] if lag.lags else ["—", "—", "—"]
        rows.append([lag.vcs, lag.side, *shown, f"{lag.delivered}/{lag.pushes}", lag.ids, lag.calls,
                     "; ".join(lag.problems) or "ok"])
    return markdown_table(["push", "receiver", "lag median ms", "lag p95 ms", "lag max ms", "pushes delivered",
                           "delivery ids", "POSTs received", "check"], rows)


def add_side(stack: Stack, runner: Runner, work: Path, vcs: str, key: str, receiver: Receiver | None) -> Side:
    name = f"{vcs}-{SIDES.index(key)}"
    stack.hostd("repo", "create", f"{OWNER}/{name}", "--vcs", vcs)
    if receiver is not None:
        stack.hostd("hook", "add", f"{OWNER}/{name}", receiver.url)
    clone = work / "clients" / name
    clone.parent.mkdir(parents=True, exist_ok=True)
    url = stack.url(f"{OWNER}/{name}.git" if vcs == "git" else f"{OWNER}/{name}", OWNER, PASSWORD)
    (runner.git if vcs == "git" else runner.hg)("clone", "-q", url, str(clone))
    return Side(key, vcs, name, url, clone, receiver)


def on_server(bench: Bench, side: Side) -> set[str]:
    """Every commit of the side's repository, as its files on disk hold them."""
    path = bench.stack.settings.repo_root / OWNER / (f"{side.name}.git" if side.vcs == "git" else side.name)
    if side.vcs == "git":
        return set(bench.runner.git("--git-dir", str(path), "rev-list", "--all").split())
    return set(bench.runner.hg("-R", str(path), "log", "-T", "{node}\n").split())


def pushes_to(bench: Bench, side: Side, since: int = 0) -> list[Pushed]:
    return [p for p in bench.pushed[since:] if (p.vcs, p.side) == (side.vcs, side.key)]


def check(bench: Bench, label: str | None = None, since: int = 0) -> None:
    """The pushes since ``since`` are on the server, and those to a hooked repository were delivered (waiting
    up to ``drain``) under one id each: a lag row per hooked side, ``label`` instead of its key."""
    for side in bench.sides.values():
        missing = {p.commit for p in pushes_to(bench, side, since)} - on_server(bench, side)
        if missing:
            bench.results.failures.append(f"{side.vcs} {side.key}: {len(missing)} pushed commits not on the server")
    hooked = [side for side in bench.sides.values() if side.receiver is not None and pushes_to(bench, side, since)]
    waits = [arrived(side.receiver, {p.commit for p in pushes_to(bench, side, since)})
             for side in hooked if side.receiver is not None]
    # A hook's deliveries go one at a time (hostd.store.hooks.hook_lock): the slow receiver's, 10 s each, may
    # still be coming long after the last push.
    serial = max((len(pushes_to(bench, side, since)) for side in hooked if side.key == SLOW), default=0)
    try:
        drained = wait_until("every push delivered", lambda: all(wait() for wait in waits),
                             max(bench.plan.drain, serial * SLOW_SECONDS + 60))
        bench.drained = drained if label is None else bench.drained
        time.sleep(1.0)  # room for a late repeat to show
    except AssertionError as error:
        bench.results.failures.append(str(error))
    earlier = {p.commit for p in bench.pushed[:since]}
    for side in hooked:  # one receiver serves a side of each VCS; a call of the rounds is no idle push's
        assert side.receiver is not None
        calls = [call for call in side.receiver.answered() if call.payload["repository"]["name"] == side.name
                 and not delivered_commits([call]) & earlier]
        bench.lags.append(lag := delivery_lag(side.vcs, label or side.key, pushes_to(bench, side, since), calls))
        bench.results.failures += [f"{side.vcs} {lag.side}: {problem}" for problem in lag.problems]


def idle_lags(bench: Bench, vcses: Sequence[str]) -> None:
    """The fast receiver's lag with nothing ahead of it: pushes to its repository alone, each made once no job
    waits or runs (the lag table's ``IDLE`` rows; their latency is not timed)."""
    since = len(bench.pushed)
    waiting = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    for vcs in vcses:
        side = bench.sides[(vcs, FAST)]
        assert side.receiver is not None
        for number in range(bench.plan.idle_runs):
            wait_until("an idle queue", lambda: int(str(bench.stack.sql(waiting)[0][0])) == 0, 60)
            _seconds, done = push(bench, side, 10_000 + number)
            wait_until(f"{vcs}: the delivery of {done.commit[:12]}", arrived(side.receiver, {done.commit}), 60)
    check(bench, IDLE, since)


def run(plan: Plan, work: Path, monitor: Monitor, cleanup: contextlib.ExitStack) -> Bench:
    fast = cleanup.enter_context(contextlib.contextmanager(Receiver().serve)())
    slow = cleanup.enter_context(contextlib.contextmanager(Receiver(delay=SLOW_SECONDS).serve)())
    (work / "stack").mkdir(parents=True)
    if PROJECT_ROOT / "var" in work.parents:
        traversable(work / "stack", PROJECT_ROOT / "var")
    with contextlib.redirect_stdout(sys.stderr):
        stack = cleanup.enter_context(contextlib.contextmanager(hook_stack)(
            work / "stack", HOSTD_HOOK_TIMEOUT=f"{HOOK_TIMEOUT:g}"))
    stack.add_user(OWNER, PASSWORD)
    runner = Runner(stack.clients, monitor)
    vcses = ("git", "hg") if plan.hg else ("git",)
    receivers = {NONE: None, FAST: fast, SLOW: slow}
    sides = {(vcs, key): add_side(stack, runner, work, vcs, key, receivers[key]) for vcs in vcses for key in SIDES}
    bench = Bench(plan, stack, runner, monitor, sides)
    steps = [(f"{vcs} pushes", partial(scenario, bench, vcs, metric))
             for vcs, metric in (("git", GIT_PUSH), ("hg", HG_PUSH)) if vcs in vcses]
    steps += [("every delivery", partial(check, bench)),
              ("the lag with the queue otherwise idle", partial(idle_lags, bench, vcses))]
    for name, step in steps:  # a step that fails is reported, and the next one runs
        print(f"-- hooks: {name}", file=sys.stderr, flush=True)
        try:
            step()
        except (BenchError, OSError, subprocess.SubprocessError, AssertionError) as error:
            traceback.print_exc(file=sys.stderr)
            bench.results.failures.append(f"{name}: {error}")
    return bench


def describe(bench: Bench, command: str, quick: bool) -> list[str]:
    """How the run was made: machine, versions, the stack, what was timed, the interference seen."""
    monitor, settings, plan = bench.monitor, bench.stack.settings, bench.plan
    share = monitor.total_others / monitor.total_wall if monitor.total_wall else 0.0
    counted = "processes outside the benchmark's cgroup, and steal" if monitor.cgroup else "steal only"
    hg = version([str(VENV_BIN / "hg"), "--version"]) if plan.hg else "hg not run (--no-hg)"
    drained = "" if bench.drained is None else f"; all had arrived {bench.drained:.1f} s after the rounds ended"
    return [
        f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `{command}`"
        f"{' (--quick: a development run, not the benchmark)' if quick else ''}.",
        "",
        f"- machine: {machine()}; load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{version(['git', '--version'])}; {hg}",
        f"- one stack as the end-to-end tests start it (`hook_stack`: HAProxy TLS, pools of {settings.workers} "
        f"workers × {settings.threads} threads, the queue pool's {settings.background.workers} workers × "
        f"{settings.background.concurrency} jobs); `HOSTD_HOOK_TIMEOUT={HOOK_TIMEOUT:g}`, so that the slow "
        f"receiver's answer after {SLOW_SECONDS:g} s is a delivery, not a timeout retried until its hook is disabled",
        "- sides, per VCS: one user's repositories without a hook, with a hook to a loopback receiver answering "
        f"204 at once, with one to a receiver answering 204 after {SLOW_SECONDS:g} s; each pushed from its own "
        "clone. Each round, per side: a fresh commit of one new file (untimed), then the timed `git push -q "
        f"origin HEAD:main` or `hg push -q URL` (password in the URL); {plan.runs} rounds per VCS after an "
        "untimed warm-up push per side, ABBA order; ratios are the median over rounds of hooked / no hook within "
        "the round; p95 is nearest-rank",
        "- delivery lag: the push client's exit to the arrival of the first POST listing the commit (before the "
        "slow receiver's wait), every push of the side counted (negative: delivered before the client exited); "
        f"`{IDLE}`: {plan.idle_runs} more pushes per VCS, each once no job was waiting or running",
        f"- interference ({counted}): others took {monitor.total_others:.1f} core-s during "
        f"{monitor.total_wall:.0f} s of timed pushes ({share:.0%} of a core); {bench.disturbed} of {bench.timed} "
        "pushes had over 10% of a core taken, and their rounds were taken again (Remarks); checked afterwards: "
        "every pushed commit is on the server, every push to a hooked repository was delivered under one "
        f"delivery id (a repeat only with the same id and body){drained}",
    ]


def render(bench: Bench, preamble: Sequence[str]) -> str:
    results = bench.results
    parts = ["# Webhooks: what a hook costs a push", "", *preamble, "", "## Push latency", "",
             push_table(results, [GIT_PUSH, HG_PUSH] if bench.plan.hg else [GIT_PUSH]), "",
             "## Delivery lag (push client's exit → receiver's arrival)", "", lag_table(bench.lags), ""]
    for title, lines in (("Remarks", results.remarks), ("Failures", results.failures)):
        parts += [f"## {title}", "", *(f"- {line}" for line in lines), ""] if lines else []
    return "\n".join(parts).rstrip() + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hooks_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="development run: 8 pushes per side")
    parser.add_argument("--runs", type=int, default=None, help="timed pushes per side and VCS (default 40)")
    parser.add_argument("--no-hg", action="store_true", help="git pushes only")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report here")
    args = parser.parse_args(list(argv))
    plan = PRESETS["quick" if args.quick else "full"]
    args.plan = replace(plan, runs=plan.runs if args.runs is None else args.runs, hg=not args.no_hg)
    args.argv = list(argv)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m tests.bench.hooks_bench", *args.argv])

    def measure(monitor: Monitor, cleanup: contextlib.ExitStack) -> tuple[str, list[str]]:
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, WORK, True)
        bench = run(args.plan, WORK, monitor, cleanup)
        return render(bench, describe(bench, command, args.quick)), bench.results.failures

    return run_in_cgroup("hooks_bench", args.output, measure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
