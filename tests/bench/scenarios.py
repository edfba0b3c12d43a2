"""The scenarios of the VCS benchmark (issue 7), each run on every side in alternation.

Each scenario takes the :class:`~tests.bench.harness.Bench` (sides, clients, plan, results),
measures, checks what it measured (a clone has every ref at the right
commit, a push moved the branch) and adds samples to the results.  Rounds
alternate the sides (see :func:`tests.bench.report.round_order`); a round that
another process disturbed is taken again (:meth:`tests.bench.harness.Bench.rounds`); a
scenario past its time budget finishes the round it is in and stops, so a
very slow side cannot make the whole run unbounded, and the report shows
the run counts.  Partial clones and the 1 GiB push are scenarios of their
own modules (:mod:`tests.bench.partial`, :mod:`tests.bench.bigpush`),
registered in :data:`SCENARIOS` with the rest.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.bench.bigpush import push_1gib
from tests.bench.clientops import get_seconds
from tests.bench.common import BenchError
from tests.bench.harness import (
    CHANGING,
    FLASK,
    FLASK_HG,
    GIT_SIDES,
    HG_PUSH,
    HTTP_SIDES,
    LARGE,
    MIB,
    REFS,
    REFS_MAINTAIN,
    Bench,
    clone_args,
)
from tests.bench.partial import clone_partial
from tests.bench.procmem import PeakSampler, process_table
from tests.bench.queries import queries
from tests.bench.report import FLOOR, OURS_POOL, OURS_TLS, REF_PLAIN, REF_TLS, Metric
from tests.bench.sides import OWNER

INFO_REFS = "/info/refs?service=git-upload-pack"
FIRST, REPEATED = "first clone after a change", "repeated clone (unchanged)"
CLONE_GROUP = "git: full clone, flask-sized"
LARGE_GROUP = "git: full clone, git/git-sized"
MEMORY_GROUP = "git: peak memory of the serving processes, git/git-sized clone"
NOOP = "git: no-op fetch"
THROUGHPUT = "git: info/refs throughput, 8 concurrent, protocol v0"
CHANGES = "git: incremental fetch and push"
FETCH_50 = Metric(CHANGES, "fetch of 50 new commits")
PUSH_50 = Metric(CHANGES, "push of 50 commits")
PUSH_BIG = Metric(CHANGES, "push of one 100 MiB file")
HG_GROUP = "hg: flask-sized"
HG_CLONE, HG_PULL, HG_PUSH_50 = Metric(HG_GROUP, "clone"), Metric(HG_GROUP, "no-op pull"), Metric(
    HG_GROUP, "push of 50 commits")
#: Both sides streaming (``hg clone --stream``): like for like, since our pool
#: offers a stream clone to a plain ``hg clone`` and ``hg serve`` does not.
HG_STREAM = Metric(HG_GROUP, "clone --stream (both sides stream)")
ROW_FLASK, ROW_REFS = "flask-sized", "20,000 loose refs"


def _clones(bench: Bench, scenario: str, group: str, repo: str, sides: Sequence[str], runs: int,
            *, memory: bool = False) -> None:
    """First clone after a ref change, then the same clone again, per side and run."""
    first, repeated = Metric(group, FIRST), Metric(group, REPEATED)
    for run, side in bench.rounds(scenario, sides, runs):
        served = side.host.git_dir(repo)
        bench.runner.git("--git-dir", str(served), "update-ref", f"refs/tags/bench-change-{side.key}-{run}",
                         bench.runner.rev(served, "HEAD"))
        expected = bench.runner.served_refs(served)
        for metric in (first, repeated):
            target = bench.scratch("clone")
            measure = bench.memory.get(side.key) if memory else None
            sampler = PeakSampler(measure) if measure is not None else None
            before = measure(process_table()) if measure is not None else 0
            with sampler if sampler is not None else contextlib.nullcontext():
                seconds = bench.runner.timed_git(*clone_args(side, side.git_url(repo), target), timeout=1800)
            bench.runner.check_clone(target, expected)
            shutil.rmtree(target)
            bench.results.add(metric, side.key, seconds)
            if sampler is not None:
                bench.results.add(Metric(MEMORY_GROUP, metric.row, "MiB"), side.key, sampler.peak / MIB)
                bench.results.add(Metric(MEMORY_GROUP, f"{metric.row}: growth over the RSS before it", "MiB"),
                                  side.key, max(0, sampler.peak - before) / MIB)


def clone(bench: Bench) -> None:
    _clones(bench, "clone", CLONE_GROUP, CHANGING, GIT_SIDES, bench.plan.quick_runs)


def clone_large(bench: Bench) -> None:
    if bench.large_git is None:
        bench.results.remarks.append("clone-large: skipped (no git/git-sized input; --quick or --no-large)")
        return
    _clones(bench, "clone-large", LARGE_GROUP, LARGE, GIT_SIDES, bench.plan.large_runs, memory=True)


def fetch_noop(bench: Bench) -> None:
    """``git fetch`` in an up-to-date clone: the ref advertisement and negotiation only."""
    for repo, source, row in ((FLASK, bench.flask_git, ROW_FLASK), (REFS, bench.refs_git, ROW_REFS)):
        metric = Metric(NOOP, row)
        clients = {}
        for key in GIT_SIDES:
            clients[key] = bench.fetch_client(f"noop-{repo}-{key}", source, bench.sides[key], repo)
            bench.runner.git("-C", str(clients[key]), "fetch", "-q", "origin")  # catch up, untimed
        for _run, side in bench.rounds("fetch-noop", GIT_SIDES, bench.plan.quick_runs):
            client = clients[side.key]
            bench.results.add(metric, side.key, bench.runner.timed_git("-C", str(client), "fetch", "-q", "origin"))
        for client in clients.values():
            shutil.rmtree(client)


def info_refs(bench: Bench) -> None:
    """wrk, 2 threads, 8 connections, protocol v0 (no Git-Protocol header: the full advertisement)."""
    for repo, row in ((FLASK, ROW_FLASK), (REFS, ROW_REFS)):
        metric = Metric(THROUGHPUT, row, "req/s", True)
        for key in HTTP_SIDES:
            side = bench.sides[key]
            get_seconds(side.git_url(repo) + INFO_REFS, side.authorization, bench.ca,
                        expect=b"001e# service=git-upload-pack")
        for _run, side in bench.rounds("info-refs", HTTP_SIDES, bench.plan.wrk_runs):
            bench.results.add(metric, side.key, bench.runner.timed_wrk(side.git_url(repo) + INFO_REFS,
                                                                       bench.plan.wrk_seconds, side.authorization))


def fetch_incremental(bench: Bench) -> None:
    """50 commits land in the served repository on disk; an existing clone fetches them."""
    push_client = bench.prepare_git_push_client()
    metric = FETCH_50
    for run, side in bench.rounds("fetch-incremental", GIT_SIDES, bench.plan.runs):
        name = f"inc-{side.key}-{run}"
        served = side.host.add_git(name, bench.flask_git)
        bench.runner.git("-C", str(push_client), "push", "-q", str(served), f"refs/heads/fifty:{bench.main_ref}")
        client = bench.fetch_client("inc-client", bench.flask_git, side, name)
        seconds = bench.runner.timed_git("-C", str(client), "fetch", "-q", "origin")
        tracking = bench.main_ref.replace("refs/heads/", "refs/remotes/origin/", 1)
        if bench.runner.rev(client / ".git", tracking) != bench.fifty:
            raise BenchError(f"{side.key}: fetch did not bring the 50 new commits")
        bench.results.add(metric, side.key, seconds)
        shutil.rmtree(client)
        shutil.rmtree(served)


def push(bench: Bench) -> None:
    """Push 50 commits, and one 100 MiB incompressible file, into a fresh copy of the flask repository."""
    client = bench.prepare_git_push_client()
    _git_push(bench, client, "push", PUSH_50, "fifty", bench.fifty, GIT_SIDES, bench.plan.quick_runs)
    # The floor's 100 MiB push is git receiving locally, the same work as the
    # reference's minus HTTP: ~10 s per run that would buy no comparison.
    bench.results.note(PUSH_BIG, FLOOR, "not run")
    _git_push(bench, client, "push-big", PUSH_BIG, "big", bench.big, HTTP_SIDES, bench.plan.runs)


def _git_push(bench: Bench, client: Path, scenario: str, metric: Metric, branch: str, tip: str,
              sides: Sequence[str], runs: int) -> None:
    """Push ``branch`` (at ``tip``) of ``client`` over the main branch of a fresh copy on each side; check it moved."""
    for run, side in bench.rounds(scenario, sides, runs):
        name = f"push-{branch}-{side.key}-{run}"
        served = side.host.add_git(name, bench.flask_git)
        seconds = bench.runner.timed_git("-C", str(client), "push", "-q", side.git_url(name),
                                         f"refs/heads/{branch}:{bench.main_ref}", timeout=1200)
        if bench.runner.rev(served, bench.main_ref) != tip:
            raise BenchError(f"{side.key}: push of {branch} did not move {bench.main_ref}")
        bench.results.add(metric, side.key, seconds)
        shutil.rmtree(served)


def hg(bench: Bench) -> None:
    """hg clone (plain and --stream), no-op pull and push of 50 commits on the flask-sized hg repository."""
    expected = bench.runner.hg_heads(bench.flask_hg)
    pullers = {}
    for key in GIT_SIDES:
        pullers[key] = bench.scratch(f"hg-pull-{key}")
        bench.runner.hg("clone", "-U", "-q", str(bench.flask_hg), str(pullers[key]))
    for _run, side in bench.rounds("hg", GIT_SIDES, bench.plan.runs):
        target = bench.scratch("hg-clone")
        pull = ["--pull"] if side.key == FLOOR else []
        seconds = bench.runner.timed_hg("clone", "-U", "-q", *pull, side.hg_url(FLASK_HG), str(target))
        if bench.runner.hg_heads(target) != expected:
            raise BenchError(f"{side.key}: hg clone differs from the server")
        bench.results.add(HG_CLONE, side.key, seconds)
        shutil.rmtree(target)
    bench.results.note(HG_STREAM, FLOOR, "not run")
    for _run, side in bench.rounds("hg-stream", [key for key in GIT_SIDES if key != FLOOR], bench.plan.runs):
        target = bench.scratch("hg-clone")
        seconds = bench.runner.timed_hg("clone", "-U", "-q", "--stream", side.hg_url(FLASK_HG), str(target))
        if bench.runner.hg_heads(target) != expected:
            raise BenchError(f"{side.key}: hg clone --stream differs from the server")
        bench.results.add(HG_STREAM, side.key, seconds)
        shutil.rmtree(target)
    for _run, side in bench.rounds("hg-pull", GIT_SIDES, bench.plan.quick_runs):
        bench.results.add(HG_PULL, side.key,
                          bench.runner.timed_hg("-R", str(pullers[side.key]), "pull", "-q", side.hg_url(FLASK_HG)))
    for puller in pullers.values():
        shutil.rmtree(puller)
    _hg_push(bench, HG_PUSH_50)


def _hg_push(bench: Bench, metric: Metric) -> None:
    client = bench.prepare_hg_push_client()
    bench.results.note(metric, OURS_POOL, "n/a (push_ssl: the pool sees http)")
    sides = (OURS_TLS, REF_TLS, REF_PLAIN, FLOOR)
    for _run, side in bench.rounds("hg-push", sides, bench.plan.quick_runs):
        served = side.host.add_hg(HG_PUSH, bench.flask_hg)
        seconds = bench.runner.timed_hg("-R", str(client), "push", "-q", "-r", bench.hg_fifty, side.hg_url(HG_PUSH))
        if bench.runner.hg_heads(served)[0] != bench.hg_fifty:
            raise BenchError(f"{side.key}: hg push did not land")
        bench.results.add(metric, side.key, seconds)


def concurrent(bench: Bench) -> None:
    """N clones of the flask repository started at once; wall time until the last one ends."""
    count = bench.plan.concurrent_clones
    wall, failed = concurrent_metrics(count)
    for run, side in bench.rounds("concurrent", (OURS_TLS, REF_TLS), bench.plan.concurrent_runs):
        expected = bench.runner.served_refs(side.host.git_dir(FLASK))
        root = bench.scratch("concurrent")
        root.mkdir()
        processes: list[subprocess.Popen[Any]] = []
        with bench.monitor.span() as span:
            for number in range(count):
                with (root / f"{number}.err").open("wb") as errors:
                    processes.append(subprocess.Popen(
                        ["git", *clone_args(side, side.git_url(FLASK), root / str(number))],
                        env=bench.runner.clients.env, stdout=subprocess.DEVNULL, stderr=errors))
            codes = [process.wait(timeout=1800) for process in processes]
        seconds = span.wall
        failures = [number for number, code in enumerate(codes) if code != 0]
        for number in set(range(count)) - set(failures):
            bench.runner.check_clone(root / str(number), expected)
        if failures:
            reason = (root / f"{failures[0]}.err").read_text(errors="replace").strip()[-300:]
            bench.results.remarks.append(f"concurrent, {side.key}, run {run}: {len(failures)} clones failed: {reason}")
        bench.results.add(wall, side.key, seconds)
        bench.results.add(failed, side.key, float(len(failures)))
        shutil.rmtree(root)


def concurrent_metrics(count: int) -> tuple[Metric, Metric]:
    """(total wall time, failed clones) of the concurrent-clones scenario."""
    group = f"git: {count} concurrent clones, flask-sized"
    return Metric(group, "total wall time"), Metric(group, "failed clones", "clones")


def maintain(bench: Bench) -> None:
    """Ref advertisement of 20,000 loose refs, then again once ``hostd maintain`` packed them.

    The reference's copy gets the same git commands ``hostd maintain`` runs,
    so both sides serve the same repository layout after.
    """
    group = "git: ref advertisement, 20,000 refs, before and after `hostd maintain`"
    _advertise(bench, group, "loose")
    start = time.monotonic()
    output = bench.ours.stack.hostd("maintain", f"{OWNER}/{REFS_MAINTAIN}").stdout.strip().replace("\n", "; ")
    took = time.monotonic() - start
    bench.results.remarks.append(f"`hostd maintain {OWNER}/{REFS_MAINTAIN}` took {took:.1f}s: {output[:300]}")
    served = bench.ref.git_dir(REFS_MAINTAIN)
    for command in (("pack-refs", "--all", "--prune"), ("repack", "-a", "-d", "-q", "--write-bitmap-index"),
                    ("prune-packed", "-q")):
        bench.runner.git("--git-dir", str(served), *command)
    for host in (bench.ours, bench.ref):
        loose = sum(1 for path in (host.git_dir(REFS_MAINTAIN) / "refs").rglob("*") if path.is_file())
        if loose > 10:
            raise BenchError(f"{loose} refs still loose in {host.git_dir(REFS_MAINTAIN)} after maintenance")
    _advertise(bench, group, "after maintain (packed)")


def _advertise(bench: Bench, group: str, state: str) -> None:
    latency = Metric(group, f"info/refs latency, one request, {state}", "ms")
    rate = Metric(group, f"info/refs throughput, 8 concurrent, {state}", "req/s", True)
    for _run, side in bench.rounds("maintain", HTTP_SIDES, bench.plan.wrk_runs):
        url = side.git_url(REFS_MAINTAIN) + INFO_REFS
        for _ in range(3):
            seconds = get_seconds(url, side.authorization, bench.ca, expect=b"001e# service=git-upload-pack")
            bench.results.add(latency, side.key, seconds * 1000)
        bench.results.add(rate, side.key, bench.runner.timed_wrk(url, bench.plan.wrk_seconds, side.authorization))


#: Scenario name (for ``--scenarios``) -> function, in the order they run.
SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "clone": clone,
    "clone-partial": clone_partial,
    "fetch-noop": fetch_noop,
    "info-refs": info_refs,
    "fetch-incremental": fetch_incremental,
    "push": push,
    "push-1gib": push_1gib,
    "hg": hg,
    "concurrent": concurrent,
    "maintain": maintain,
    "clone-large": clone_large,
    "queries": queries,
}
