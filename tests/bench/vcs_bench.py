"""Issue 7, part 1: our git and hg serving against the reference servers, side by side, in one run.

``python -m tests.bench.vcs_bench [--quick] [--scenarios clone,push,...]`` (and
``make bench``) builds or reuses the inputs (:mod:`tests.bench.repogen`), starts
our whole stack (the end-to-end tests' fixture) and the reference servers
(:mod:`tests.bench.refservers`) on free loopback ports, runs the scenarios of
:mod:`tests.bench.scenarios` alternating the sides, and writes ``tests/bench/RESULTS.md``:
the machine, how it was run, a table of medians and ratios per scenario
group, and each target of the issue with met / NOT met.

The sides (see :mod:`tests.bench.sides`): ours through HAProxy with TLS, as a
user clones (private repositories, a stored password); ours straight to the
pool's gunicorn in plain HTTP; ``git http-backend`` under fcgiwrap behind
nginx with TLS and in plain HTTP (``hg serve`` behind the same nginx, for
hg), asking for the same password the same way; and the local floor
(``git clone --no-local file://``, ``hg clone --pull`` from a path).
The ``queries`` scenario (:mod:`tests.bench.queries`, issue 17) adds a
section of its own: database queries per HTTP request of warm clones and
pushes.  :mod:`tests.bench.compare` puts two reports' ratios side by side
(SQLite's and PostgreSQL's, say).

Exit status: 0 when everything ran (whether or not the targets are met; the
report says which are), 1 when a scenario failed to run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostd.ops import stack as hostd_stack
from hostd.ops.haproxy import StackError
from hostd.settings import PROJECT_ROOT
from tests.bench import scenarios as sc
from tests.bench.clientops import Runner
from tests.bench.common import BenchError, machine, traversable
from tests.bench.harness import CHANGING, FLASK, FLASK_HG, HG_PUSH, LARGE, MIB, REFS, REFS_MAINTAIN, Bench, Plan
from tests.bench.interference import SHARE, SLACK, Monitor, OwnCgroup
from tests.bench.partial import allow_filters
from tests.bench.procmem import (
    Footprint,
    ProcessTable,
    cgi_tree,
    gunicorn_footprint,
    process_table,
    reference_footprint,
    worker_trees,
)
from tests.bench.refservers import ReferenceServers, versions
from tests.bench.repogen import BenchInputs, ensure_inputs
from tests.bench.report import OURS_POOL, OURS_TLS, REF_PLAIN, REF_TLS, Results, render
from tests.bench.sides import (
    OWNER,
    PASSWORD,
    FloorHost,
    OursHost,
    RefHost,
    configure_credentials,
    copy_hg,
    make_sides,
)
from tests.bench.targets import count_slow, extra_targets, targets
from tests.e2e.stackfixture import VENV_BIN, Clients, Stack, start_stack, stop_stack

RESULTS = Path(__file__).with_name("RESULTS.md")
WORK = PROJECT_ROOT / "var" / "bench" / "run"
INPUTS = PROJECT_ROOT / "var" / "bench" / "inputs"
#: Soft time limits per scenario (seconds): past it, the scenario ends with the round it is in.
BUDGETS = {"clone": 360.0, "fetch-noop": 90.0, "info-refs": 150.0, "fetch-incremental": 90.0, "push": 120.0,
           "push-big": 150.0, "hg": 180.0, "hg-stream": 120.0, "hg-pull": 120.0, "hg-push": 180.0, "concurrent": 200.0,
           "maintain": 150.0, "clone-large": 900.0, "clone-partial": 150.0, "push-1gib": 900.0}
#: Our pool's push limit in the benchmark: above the 1 GiB push's pack (1 GiB of file content plus framing).
MAX_PUSH_BYTES = 2 * 1024**3


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.vcs_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="development run: 2 runs, no git/git-sized input, wrk 2 s, 8 concurrent clones")
    parser.add_argument("--scenarios", default=",".join(sc.SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(sc.SCENARIOS)}")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per scenario (default 5, --quick 2); four times as many of the operations of "
                             "a second or less, except with --quick")
    parser.add_argument("--no-large", action="store_true", help="skip the git/git-sized input and its clones")
    parser.add_argument("--inputs", type=Path, default=INPUTS, help="where the generated inputs are cached")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the markdown report to write")
    parser.add_argument("--keep", action="store_true", help=f"keep {WORK} (servers' copies, logs) afterwards")
    args = parser.parse_args(list(argv))
    args.argv = list(argv)
    unknown = set(args.scenarios.split(",")) - set(sc.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """Run counts: 5 (20 of the operations of a second or less, 9 of the git/git-sized clones;
    3 rounds of concurrent clones, 1 of the 1 GiB push per HTTP version);
    far fewer with --quick."""
    if args.quick:
        runs = args.runs or 2
        return Plan(runs=runs, quick_runs=runs, large_runs=min(runs, 1), wrk_runs=min(runs, 2), wrk_seconds=2.0,
                    concurrent_clones=8, concurrent_runs=min(runs, 2), budgets=dict(BUDGETS))
    runs = args.runs or 5
    return Plan(runs=runs, quick_runs=4 * runs, large_runs=runs + 4, wrk_runs=runs,
                concurrent_runs=min(runs, 3), budgets=dict(BUDGETS))


def _version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20)
    except OSError:
        return "not installed"
    return (result.stdout + result.stderr).strip().splitlines()[0] if (result.stdout + result.stderr).strip() else "?"


def describe_machine() -> list[str]:
    """CPU, memory, kernel, load and the versions of every server and client involved."""
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    found = versions()
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin") or "haproxy"
    return [
        f"- machine: {machine()}; {os.cpu_count()} CPUs online; {memory} memory",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(the machine is shared: other jobs run at the same time, which is why the sides alternate)",
        f"- {_version(['git', '--version'])}; {_version([str(VENV_BIN / 'hg'), '--version'])}",
        f"- {found['nginx']}; {found['fcgiwrap']}; {_version([haproxy, '-v'])}; {found['wrk']}",
    ]


def _git_master(running: Stack) -> int:
    """The git pool's gunicorn master, whose workers' memory is sampled."""
    env = hostd_stack.environment(running.settings)
    result = subprocess.run([env["HOSTD_VENV_BIN"] + "/supervisorctl", "-c", str(hostd_stack.SUPERVISORD_CONF),
                             "pid", "git"], env=env, capture_output=True, text=True, timeout=30, check=True)
    return int(result.stdout.strip())


def memory_measures(git_master: int, fcgiwrap: int) -> dict[str, Callable[[ProcessTable], int]]:
    """What is sampled during the git/git-sized clones: our git workers' trees, fcgiwrap's CGI tree."""
    ours, reference = worker_trees(git_master), cgi_tree(fcgiwrap)
    return {OURS_TLS: ours, OURS_POOL: ours, REF_TLS: reference, REF_PLAIN: reference}


def footprints(git_master: int, nginx: int, fcgiwrap: int) -> dict[str, Callable[[ProcessTable], Footprint]]:
    """What is sampled during the 1 GiB push, by role: our git workers and their children; nginx and the CGI tree."""
    return {OURS_TLS: gunicorn_footprint(git_master), REF_TLS: reference_footprint(nginx, fcgiwrap)}


class Timings:
    """Wall time of each phase, for the report's breakdown."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        print(f"-- {name}", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            self.phases.append((name, time.monotonic() - start))

    def lines(self) -> list[str]:
        total = sum(seconds for _name, seconds in self.phases)
        return [f"| {name} | {seconds:.0f} s |" for name, seconds in self.phases] + [f"| **total** | {total:.0f} s |"]


def provision(inputs: BenchInputs, ours: OursHost, ref: RefHost, floor: FloorHost, runner: Runner) -> None:
    """Each server's own copy of each input (git objects hard-linked, the rest copied)."""
    git = {FLASK: inputs.flask_git, CHANGING: inputs.flask_git, REFS: inputs.refs_git,
           REFS_MAINTAIN: inputs.refs_git}
    if inputs.large_git is not None:
        git[LARGE] = inputs.large_git
    for name, source in git.items():
        for host in (ours, ref, floor):
            host.add_git(name, source)
    for host in (ref, floor):  # git's own upload-pack serves partial clones only if allowed; ours is the server's job
        allow_filters(runner, host.git_dir(FLASK))
    ours.add_hg(FLASK_HG, inputs.flask_hg)
    ours.add_hg(HG_PUSH, inputs.flask_hg)
    floor.add_hg(FLASK_HG, inputs.flask_hg)
    floor.add_hg(HG_PUSH, inputs.flask_hg)


@dataclass
class Outcome:
    """What a run produced: results, the plan it followed, its timings, facts about the stack."""

    results: Results
    plan: Plan
    timings: Timings
    monitor: Monitor
    slow: int | None = None
    traffic_seconds: float = 0.0
    pool: str = "?"


def start(inputs: BenchInputs, plan: Plan, results: Results, monitor: Monitor,
          cleanup: contextlib.ExitStack) -> tuple[Stack, Bench]:
    """Our stack and the reference servers up (stopped by ``cleanup``), each with its copies of the inputs."""
    (WORK / "ours").mkdir()
    traversable(WORK / "ours", PROJECT_ROOT / "var")
    with contextlib.redirect_stdout(sys.stderr):
        running = start_stack(WORK / "ours", HOSTD_MAX_PUSH_BYTES=str(MAX_PUSH_BYTES))
    cleanup.callback(stop_stack, running)
    running.add_user(OWNER, PASSWORD)
    hg_root = WORK / "ref" / "hg"
    hg_root.mkdir(parents=True)
    for name in (FLASK_HG, HG_PUSH):
        copy_hg(inputs.flask_hg, hg_root / name)
    servers = cleanup.enter_context(ReferenceServers(
        WORK / "ref" / "servers", running.settings.tls_dir / "server.pem",
        {name: hg_root / name for name in (FLASK_HG, HG_PUSH)}, {OWNER: PASSWORD}))
    ours, ref, floor = OursHost(running), RefHost(servers, hg_root), FloorHost(WORK / "floor")
    clients = Clients(WORK / "home", running.settings.tls_dir / "ca.pem")
    configure_credentials(clients, ours, ref)
    runner = Runner(clients, monitor)
    provision(inputs, ours, ref, floor, runner)
    main_ref = runner.default_branch(inputs.flask_git)
    master = _git_master(running)
    bench = Bench(
        flask_git=inputs.flask_git, large_git=inputs.large_git, refs_git=inputs.refs_git, flask_hg=inputs.flask_hg,
        runner=runner, results=results, sides=make_sides(ours, ref, floor), ours=ours, ref=ref, floor=floor,
        work=WORK / "clients", plan=plan, ca=clients.ca,
        memory=memory_measures(master, servers.fcgiwrap_pid), monitor=monitor,
        footprints=footprints(master, servers.nginx_pid, servers.fcgiwrap_pid),
        main_ref=main_ref, base=runner.rev(inputs.flask_git, main_ref))
    bench.work.mkdir()
    return running, bench


def run(args: argparse.Namespace) -> Outcome:
    """Set everything up, run the chosen scenarios (a failing one is reported, the next one runs), tear down."""
    with contextlib.ExitStack() as cleanup:
        cgroup = OwnCgroup.enter()  # before anything is started, so that all of it is accounted there
        if cgroup is not None:
            cleanup.callback(cgroup.leave)  # last, once every server has stopped
        outcome = Outcome(Results(), make_plan(args), Timings(), Monitor(cgroup))
        results, timings = outcome.results, outcome.timings
        with timings.phase("inputs (tests.bench.repogen, cached)"):
            inputs = ensure_inputs(args.inputs, large=not (args.quick or args.no_large))
        if WORK.exists():
            shutil.rmtree(WORK)
        WORK.mkdir(parents=True)
        if not args.keep:
            cleanup.callback(shutil.rmtree, WORK, True)
        with timings.phase("start our stack and the reference servers, copy the inputs"):
            running, bench = start(inputs, outcome.plan, results, outcome.monitor, cleanup)
        outcome.pool = f"{running.settings.workers} workers × {running.settings.threads} threads"
        resident = [f"at start {bench.memory[OURS_TLS](process_table()) / MIB:.0f} MiB"]
        started = time.monotonic()
        for name in args.scenarios.split(","):
            with timings.phase(f"scenario {name}"):
                try:
                    sc.SCENARIOS[name](bench)
                except (BenchError, OSError, subprocess.SubprocessError, AssertionError) as error:
                    traceback.print_exc(file=sys.stderr)
                    results.failures.append(f"{name}: {error}")
            resident.append(f"after {name} {bench.memory[OURS_TLS](process_table()) / MIB:.0f} MiB")
        results.remarks.append("RSS of our largest git worker (with its children), idle: " + ", ".join(resident))
        outcome.slow = count_slow(running.settings.log_dir)
        outcome.traffic_seconds = time.monotonic() - started
    return outcome


def report(args: argparse.Namespace, outcome: Outcome, machine_lines: Sequence[str]) -> str:
    """RESULTS.md: how it was run, the tables, the targets, the time taken."""
    plan, results = outcome.plan, outcome.results
    command = " ".join(["python -m tests.bench.vcs_bench", *args.argv])
    how = [
        f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `{command}`"
        f"{' (--quick: a development run, not the benchmark)' if args.quick else ''} "
        "(`make bench` runs it with its defaults). Medians of the runs; sides taken in alternation, "
        "the order reversed every other run.",
        "",
        *machine_lines,
        f"- runs: {plan.runs} per scenario; {plan.quick_runs} of the operations of a second or less (flask-sized "
        f"clones, no-op fetch and pull, pushes of 50 commits); {plan.large_runs} for git/git-sized clones; "
        f"wrk {plan.wrk_runs} × {plan.wrk_seconds:g} s (`wrk -t2 -c8`); {plan.concurrent_runs} rounds of "
        f"{plan.concurrent_clones} concurrent clones; {plan.huge_runs} of the 1 GiB push per side and HTTP version",
        f"- ours: the whole stack as `make up` runs it (HAProxy TLS → gunicorn pools of {outcome.pool} each, "
        "memcached), private repositories; git authenticates with the `store` credential helper (a 401, then "
        "the password), hg with `[auth]`; pool direct: plain HTTP to the pool's gunicorn (git sends Basic auth up "
        "front with `http.extraHeader`)",
        "- reference: `git http-backend` under fcgiwrap (8 children, our pool's concurrency) behind nginx "
        "(plain, and TLS with HTTP/2 and HAProxy's ciphers and certificate); `hg serve` (same Mercurial as our hg "
        "pool, on loopback) behind the same nginx, plain and TLS",
        "- authentication: the reference repositories are private too: nginx `auth_basic` on both ports, the same "
        "user and password as ours, checked against an htpasswd file of `{SSHA}` entries (one salted SHA-1 per "
        "request), the user passed to http-backend as `REMOTE_USER`; each reference side's clients use the "
        "mechanism of the matching side of ours (TLS: git's `store` helper, hg's `[auth]`; plain: git's "
        "`http.extraHeader`, hg's `[auth]`), and wrk sends the same `Authorization` header to every side; the "
        "local floor has none",
        "- clones are `git clone --no-checkout` and `hg clone -U` (the server's and client's work, not the "
        "disk's); every clone, fetch and push is checked (refs equal to the server's, pushed tip on disk)",
        "- ratios are ours / reference for like-for-like pairs: HAProxy TLS vs nginx TLS, pool direct vs plain "
        "reference; each is the median over the rounds of the ratio within a round (the sides of a round run "
        "back to back, so the machine's drift between rounds hits both and cancels); for throughput (req/s) "
        "higher is better",
        "- partial clones: `git clone --no-checkout --filter=blob:none` and `--filter=tree:0`, each checked to lack "
        "objects (a server that ignores the filter sends everything: its cells then say failed); the reference's "
        "and floor's copies have `uploadpack.allowFilter` and `uploadpack.allowReachableSHA1InWant`",
        "- 1 GiB push: 8 random files of 128 MiB in one commit (generated once), pushed with `http.version` "
        "HTTP/1.1 and HTTP/2 (checked in a curl trace) through the TLS sides; memory growth is the peak RSS "
        "sampled every 50 ms minus the RSS before, per role: the gunicorn worker that served it and its git "
        "children (ours), nginx and what fcgiwrap spawned (reference); our pool's push limit is set to "
        f"{MAX_PUSH_BYTES // 1024**3} GiB for the run",
        f"- interference: {interference(outcome.monitor)}",
    ]
    appendix = ["## Time taken", "", "| phase | wall time |", "| --- | ---: |", *outcome.timings.lines(), ""]
    appendix.append(f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    return render(results, targets(plan), title="hostd vs reference servers (issue 7)", preamble=how,
                  extra_targets=extra_targets(results, plan, outcome.slow, outcome.traffic_seconds),
                  appendix=appendix)


def interference(monitor: Monitor) -> str:
    """How disturbed rounds were told apart, and how much CPU others took during the timed operations."""
    counted = ("the CPU of processes outside the benchmark's own cgroup (everything it starts runs in it) plus "
               "the hypervisor's steal time" if monitor.cgroup is not None else
               "the hypervisor's steal time only (the benchmark could not make a cgroup of its own: not root, or "
               "no cgroup2 mounted)")
    share = monitor.total_others / monitor.total_wall if monitor.total_wall else 0.0
    return (f"around every timed operation the benchmark reads {counted}; a round in which others took more "
            f"than {SHARE:.0%} of a core (and over {SLACK:g} core-s) during any operation is dropped and taken "
            f"again (Remarks list them); over all timed operations, others took {monitor.total_others:.1f} "
            f"core-s in {monitor.total_wall:.0f} s ({share:.1%} of a core)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    machine_lines = describe_machine()
    try:
        outcome = run(args)
    except (BenchError, StackError, OSError, subprocess.CalledProcessError, AssertionError) as error:
        traceback.print_exc(file=sys.stderr)
        print(f"vcs_bench: could not run: {error}", file=sys.stderr)
        return 1
    text = report(args, outcome, machine_lines)
    args.output.write_text(text)
    print(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 1 if outcome.results.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

