"""SSH rows of ``make bench``: hostd's SSH against OpenSSH with git-shell, serving the same repositories, in one run.

``python -m tests.bench.ssh_bench [--quick] [--keys N] [--output FILE]``
starts our stack (the end-to-end tests' fixture: its sshd, ``hostd-ssh`` and
the gateway) and the reference (:mod:`tests.bench.ssh_ref`: the same sshd
binary, git-shell, an ``authorized_keys`` file), gives both a copy of the
flask-sized input (:mod:`tests.bench.repogen`) and one ed25519 key, and
times the real ``git`` over the real ``ssh`` (a new connection for every
operation, host keys checked), the sides alternating in ABBA order so the
machine's noise hits both (:mod:`tests.bench.ssh_scenarios`): a no-op fetch
(protocol v2), a clone, a push of one commit, and the key lookup at 10,000
keys (``hostd-ssh keys`` run as sshd runs it, against no-op fetches through
a 10,001-line ``authorized_keys``).

It prints a markdown report: medians, p95, ours / reference (the median of
the ratios within rounds, :meth:`tests.bench.report.Results.ratio`), each
target with PASS or MISS.  Exit status, as :func:`tests.bench.vcs_bench.main`:
0 when everything ran, whether or not the targets are met (the report says
which are); 1 when something could not be measured.
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
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from hostd.settings import PROJECT_ROOT
from tests.bench import ssh_scenarios as sc
from tests.bench.clientops import Runner
from tests.bench.common import BenchError, machine, markdown_table, traversable
from tests.bench.fastimport import build_git
from tests.bench.history import FLASK
from tests.bench.interference import Monitor, run_in_cgroup
from tests.bench.repogen import describe_git, ensure_built
from tests.bench.report import Metric, Results, format_ratio, format_value
from tests.bench.sides import OWNER, PASSWORD, OursHost
from tests.bench.ssh_ref import ACCOUNT, MANY_ACCOUNT, ReferenceSshd
from tests.e2e.sshclient import Key, add_key, known_hosts
from tests.e2e.stackfixture import Clients, start_stack, stop_stack

WORK = PROJECT_ROOT / "var" / "bench" / "ssh-run"
INPUTS = PROJECT_ROOT / "var" / "bench" / "inputs"
PRESETS = {"full": sc.Plan(),
           "quick": sc.Plan(fetch_runs=8, clone_runs=3, push_runs=5, helper_runs=40, budget=60.0)}
#: The main table's rows: what, against which reference side, the target (ours / reference at most) or None.
ROWS: tuple[tuple[Metric, str, float | None], ...] = ((sc.FETCH, sc.REF, 1.2), (sc.CLONE, sc.REF, 1.1),
                                                      (sc.PUSH, sc.REF, None))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ssh_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="development run: few runs of each operation")
    parser.add_argument("--keys", type=int, default=None, help="fake keys in the database and the long file "
                                                               "(default 10,000)")
    parser.add_argument("--inputs", type=Path, default=INPUTS, help="where the generated inputs are cached")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report here")
    parser.add_argument("--keep", action="store_true", help=f"keep {WORK} (servers' copies, logs) afterwards")
    args = parser.parse_args(list(argv))
    plan = PRESETS["quick" if args.quick else "full"]
    args.plan = plan if args.keys is None else replace(plan, keys=args.keys)
    args.argv = list(argv)
    return args


def make_runner(home: Path, ca: Path, command: str, monitor: Monitor) -> Runner:
    """git as a user runs it (the end-to-end tests' client environment), through ``command`` for SSH."""
    clients = Clients(home, ca)
    # GIT_SSH_VARIANT=ssh: git sends GIT_PROTOCOL (-o SendEnv), which is how protocol v2 travels over SSH.
    clients.env.update(GIT_SSH_COMMAND=command, GIT_SSH_VARIANT="ssh")
    return Runner(clients, monitor)


def start(plan: sc.Plan, work: Path, source: Path, monitor: Monitor, cleanup: contextlib.ExitStack) -> sc.Bench:
    """Our stack and the reference up (stopped by ``cleanup``), each with copies of ``source``; one key for both."""
    (work / "ours").mkdir(parents=True)
    if PROJECT_ROOT / "var" in work.parents:
        traversable(work / "ours", PROJECT_ROOT / "var")
    with contextlib.redirect_stdout(sys.stderr):
        stack = start_stack(work / "ours")
    cleanup.callback(stop_stack, stack)
    if not (stack.settings.run_dir / "sshd_config").exists():
        raise BenchError("the stack runs no sshd (it needs root, OpenSSH's sshd and libnss-wrapper)")
    stack.add_user(OWNER, PASSWORD)
    key = Key.generate(work)
    add_key(stack, key, OWNER)
    ours = OursHost(stack)
    ref = cleanup.enter_context(ReferenceSshd(work / "ref", key.public, many=plan.keys))
    for name in (sc.MEDIUM, sc.PUSHED):
        ours.add_git(name, source)
        ref.add_git(name, source)
    settings, ca = stack.settings, stack.settings.tls_dir / "ca.pem"
    our_ssh = sc.ssh_command(known_hosts(settings, work / "known_hosts-ours"), key.path, settings.ports.ssh)
    ref_ssh = sc.ssh_command(ref.known_hosts(work / "known_hosts-ref"), key.path, ref.port)
    sides = {
        sc.OURS: sc.Side(sc.OURS, make_runner(work / "home-ours", ca, our_ssh, monitor),
                         lambda name: f"ssh://git@{settings.bind}:{settings.ports.ssh}/{OWNER}/{name}.git",
                         ours.git_dir),
        sc.REF: sc.Side(sc.REF, make_runner(work / "home-ref", ca, ref_ssh, monitor),
                        lambda name: ref.git_url(ACCOUNT, name), ref.git_dir),
        sc.REF_MANY: sc.Side(sc.REF_MANY, make_runner(work / "home-ref-many", ca, ref_ssh, monitor),
                             lambda name: ref.git_url(MANY_ACCOUNT, name), ref.git_dir),
    }
    servers = {sc.OURS: (int(stack.supervisorctl("pid", "sshd")), int(stack.supervisorctl("pid", "sshgate"))),
               sc.REF: (ref.pid,), sc.REF_MANY: (ref.pid,)}
    return sc.Bench(plan, work, source, sides, stack, key, monitor, servers)


def run(plan: sc.Plan, work: Path, source: Path, monitor: Monitor, cleanup: contextlib.ExitStack) -> sc.Bench:
    """Start both sides, check both speak protocol v2, run every scenario (a failing one is reported, not fatal)."""
    bench = start(plan, work, source, monitor, cleanup)
    for key in (sc.OURS, sc.REF):
        sc.check_protocol_v2(bench.sides[key])
    for name, scenario in sc.SCENARIOS.items():
        print(f"-- ssh: {name}", file=sys.stderr, flush=True)
        try:
            scenario(bench)
        except (BenchError, OSError, subprocess.SubprocessError, AssertionError) as error:
            traceback.print_exc(file=sys.stderr)
            bench.results.failures.append(f"{name}: {error}")
    return bench


# -- the report ---------------------------------------------------------------

def nearest_rank(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def summary(results: Results, metric: Metric, side: str) -> list[object]:
    """[median, p95, runs] of a cell, formatted in the metric's unit; dashes when it has no samples."""
    values = results.samples.get((metric, side))
    if not values:
        return ["—", "—", 0]
    return [format_value(statistics.median(values), metric.unit),
            format_value(nearest_rank(values, 0.95), metric.unit), len(values)]


def verdict(ratio: float | None, target: float | None) -> str:
    if target is None:
        return "—"
    return "not measured" if ratio is None else "PASS" if ratio <= target else "MISS"


def cpu_cell(cpu: dict[tuple[Metric, str], float], metric: Metric, side: str) -> str:
    return "—" if (metric, side) not in cpu else f"{cpu[(metric, side)] * 1000:.1f}"


def main_table(results: Results, cpu: dict[tuple[Metric, str], float]) -> str:
    """Per operation: each side's median and p95, ours / reference, the target, PASS or MISS, server CPU."""
    headers = ["operation", "unit", "ours median", "ours p95", "reference median", "reference p95",
               "ours/ref", "target", "verdict", "runs", "server CPU ms/op, ours", "server CPU ms/op, reference"]
    rows: list[list[object]] = []
    for metric, reference, target in ROWS:
        ratio = results.ratio(metric, sc.OURS, reference)
        ours, theirs = summary(results, metric, sc.OURS), summary(results, metric, reference)
        rows.append([metric.row, metric.unit, *ours[:2], *theirs[:2], format_ratio(ratio),
                     "—" if target is None else f"≤ {target:g}×", verdict(ratio, target), f"{ours[2]}/{theirs[2]}",
                     cpu_cell(cpu, metric, sc.OURS), cpu_cell(cpu, metric, reference)])
    return markdown_table(headers, rows)


def over_floor(results: Results, helper: Metric, floor: Metric) -> str:
    """The median of (lookup - floor) over the rounds: each round timed one of each, back to back."""
    pairs = list(zip(results.samples.get((helper, sc.OURS), []), results.samples.get((floor, sc.OURS), []),
                     strict=True))
    return "—" if not pairs else f"{statistics.median(ms - base for ms, base in pairs):+.2f} ms"


def keys_section(bench: sc.Bench) -> list[str]:
    """The key lookup: the command's own time, with one key and many; the fetch through a long file."""
    results, lines = bench.results, bench.plan.keys + 1
    helper = " ".join(bench.lookup_command) or "(not run)"
    rows = [
        [sc.SPAWN_ONE.row, *summary(results, sc.SPAWN_ONE, sc.OURS)],
        [sc.HELPER_ONE.row, *summary(results, sc.HELPER_ONE, sc.OURS)],
        [sc.SPAWN_MANY.row, *summary(results, sc.SPAWN_MANY, sc.OURS)],
        [f"AuthorizedKeysCommand (hostd-ssh keys), {bench.stored_keys:,} keys in ssh_keys",
         *summary(results, sc.HELPER_MANY, sc.OURS)],
        [f"no-op fetch, ours: {bench.stored_keys:,} keys in the database", *summary(results, sc.FETCH_MANY, sc.OURS)],
        ["no-op fetch, reference: authorized_keys of 1 line", *summary(results, sc.FETCH_MANY, sc.REF)],
        [f"no-op fetch, reference: authorized_keys of {lines:,} lines, ours last",
         *summary(results, sc.FETCH_MANY, sc.REF_MANY)],
    ]
    one_line, long_file = results.median(sc.FETCH_MANY, sc.REF), results.median(sc.FETCH_MANY, sc.REF_MANY)
    extra = "—" if one_line is None or long_file is None else f"{long_file - one_line:+.1f} ms"
    return [
        f"The command is timed as sshd runs it (`{helper}`: its sshd_config line with `%f` filled in, sshd's "
        "environment, stdin from /dev/null), each answer checked to be our key's line; sshd runs it twice per "
        "connection, for the key's probe and for its signature, and reads an `authorized_keys` file twice likewise.",
        "",
        markdown_table(["measurement", "median ms", "p95 ms", "runs"], rows),
        "",
        f"- ours / reference with the {lines:,}-line file: "
        f"{format_ratio(results.ratio(sc.FETCH_MANY, sc.OURS, sc.REF_MANY))}; ours / reference with one line: "
        f"{format_ratio(results.ratio(sc.FETCH_MANY, sc.OURS, sc.REF))}",
        f"- the long file costs the reference {extra} per connection (median against median; "
        f"{format_ratio(results.ratio(sc.FETCH_MANY, sc.REF_MANY, sc.REF))} within rounds)",
        f"- server CPU per no-op fetch, ours with {bench.stored_keys:,} keys: "
        f"{cpu_cell(bench.cpu, sc.FETCH_MANY, sc.OURS)} ms",
        "- the lookup over the floor of starting a program (median of the differences within rounds): "
        f"{over_floor(results, sc.HELPER_ONE, sc.SPAWN_ONE)} with our key alone, "
        f"{over_floor(results, sc.HELPER_MANY, sc.SPAWN_MANY)} with {bench.stored_keys:,} keys",
    ]


def render(bench: sc.Bench, preamble: Sequence[str]) -> str:
    """The markdown report: how it ran, the main table, the key lookup, remarks and failures."""
    results = bench.results
    parts = ["# SSH: hostd against OpenSSH with git-shell", "", *preamble, "", f"## {sc.GROUP}", "",
             main_table(results, bench.cpu), "", f"## Key lookup at {bench.plan.keys:,} keys", "",
             *keys_section(bench), ""]
    if results.remarks:
        parts += ["## Remarks", "", *(f"- {remark}" for remark in results.remarks), ""]
    if results.failures:
        parts += ["## Failures", "", *(f"- {failure}" for failure in results.failures), ""]
    return "\n".join(parts).rstrip() + "\n"


def version(command: Sequence[str]) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=20)
    return ((result.stdout + result.stderr).strip().splitlines() or ["?"])[0]


def describe(bench: sc.Bench, command: str, quick: bool) -> list[str]:
    """How the run was made: machine, versions, the input, counts, the interference seen."""
    info, plan, monitor = describe_git(bench.source), bench.plan, bench.monitor
    share = monitor.total_others / monitor.total_wall if monitor.total_wall else 0.0
    bench.take()
    counted = "processes outside the benchmark's cgroup, and steal" if monitor.cgroup else "steal only"
    return [
        f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `{command}`"
        f"{' (--quick: a development run, not the benchmark)' if quick else ''}.",
        "",
        f"- machine: {machine()}; load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- {version(['ssh', '-V'])} (the client; both servers are /usr/sbin/sshd); {version(['git', '--version'])}",
        "- ours: the stack's sshd; `AuthorizedKeysCommand hostd-ssh keys` asks the gateway (one indexed query); "
        "`hostd-ssh`, the login shell, hands the session to the gateway, which runs `git upload-pack` on it "
        f"(fetch, clone) or the HTTPS push path (push); private repositories of `{OWNER}`",
        "- reference: the same sshd with the stack's settings but `git-shell` as the login shell (uid 0, like the "
        "stack's `git` account) and the key in a plain `authorized_keys` file (tests/bench/ssh_ref.py)",
        f"- input: the flask-sized generated repository ({info['commits']:,} commits, {info['refs']} refs, "
        f"{info['packed_bytes'] / 2**20:.1f} MiB packed), a hard-linked copy per side",
        "- client: `git` with `GIT_SSH_COMMAND=ssh -F /dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes "
        "-o ControlMaster=no -i KEY -p PORT` (one ed25519 key for both sides: a new connection per operation)",
        f"- runs per side: {plan.fetch_runs} no-op fetches, {plan.clone_runs} clones (after an untimed one), "
        f"{plan.push_runs} pushes, {plan.helper_runs} key lookups; the sides alternate (ABBA), and ratios are the "
        "median over rounds of ours / reference within the round; p95 is nearest-rank",
        "- server CPU: what each side's server processes used over the timed rounds (their own CPU and their "
        "reaped children's, /proc/PID/stat, 10 ms ticks), per operation: ours is the stack's sshd (with "
        "`hostd-ssh` in both roles) and the gateway (with git); the reference is its sshd (with git-shell and git); "
        "what PostgreSQL and memcached do for ours (the key lookups' queries, the push log) is not in it",
        f"- interference ({counted}): others took {monitor.total_others:.1f} core-s during "
        f"{monitor.total_wall:.0f} s of timed operations ({share:.0%} of a core); {bench.disturbed} of "
        f"{bench.timed} operations had over 10% of a core taken, and the rounds of fetches, clones and pushes "
        "they were in were taken again (Remarks), up to as many times as there are runs",
    ]


def medium_input(root: Path) -> Path:
    """The flask-sized input of the VCS benchmark (5,000 commits, ~16 MiB), built once and cached."""
    root.mkdir(parents=True, exist_ok=True)
    return ensure_built(root / "flask.git", {"spec": asdict(FLASK)}, lambda path: build_git(path, FLASK))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m tests.bench.ssh_bench", *args.argv])

    def measure(monitor: Monitor, cleanup: contextlib.ExitStack) -> tuple[str, list[str]]:
        source = medium_input(args.inputs)
        if WORK.exists():
            shutil.rmtree(WORK)
        WORK.mkdir(parents=True)
        if not args.keep:
            cleanup.callback(shutil.rmtree, WORK, True)
        bench = run(args.plan, WORK, source, monitor, cleanup)
        return render(bench, describe(bench, command, args.quick)), bench.results.failures

    return run_in_cgroup("ssh_bench", args.output, measure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
