"""Issue 16's 1 GiB push: through HAProxy over HTTP/1.1 and HTTP/2, against ``git http-backend`` behind nginx.

Eight files of 128 MiB of random bytes (generated once, the same in every
run) are pushed in one commit over the main branch of a fresh copy of the
flask repository, once per side, HTTP version and run.  Besides the time,
the serving side's memory is sampled throughout (:mod:`tests.bench.procmem`)
and its growth over what it held before is reported per role: the issue's
limit (under 100 MiB) is on our git worker itself; its git children and the
reference's processes are shown next to it.

Only the TLS sides take part: the pool direct speaks HTTP/1.1 only, and
the issue names HAProxy.  Before the timed pushes, one ``git ls-remote``
per side and version, traced, checks that curl spoke the version asked for
(a server that did not offer h2 would silently give HTTP/1.1 twice).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.bench.clientops import RandomFile
from tests.bench.common import BenchError
from tests.bench.harness import FLASK, MIB, Bench
from tests.bench.procmem import CGI, GIT_CHILDREN, NGINX, WORKER, FootprintSampler
from tests.bench.report import OURS_TLS, REF_TLS, Metric

GROUP = "git: push of 1 GiB (8 random files of 128 MiB) through TLS"
MEMORY_GROUP = "git: peak memory growth of the serving processes during the 1 GiB push"
HTTP_VERSIONS = ("HTTP/1.1", "HTTP/2")
SIDES = (OURS_TLS, REF_TLS)
BRANCH = "huge"
#: What each memory row adds up, per side: (row, our roles, the reference's roles).
ROLE_ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("git worker (ours: the gunicorn worker; reference: nginx)", (WORKER,), (NGINX,)),
    ("git processes it runs (ours: the worker's children; reference: http-backend and its children)",
     (GIT_CHILDREN,), (CGI,)),
    ("all of the above", (WORKER, GIT_CHILDREN), (NGINX, CGI)),
)
WORKER_ROW = ROLE_ROWS[0][0]
#: The issue's limit on our git worker's growth.
LIMIT_MIB = 100.0
#: A request line in git's curl trace (GIT_TRACE_CURL): "... => Send header: GET /x HTTP/2".
REQUEST_LINE = re.compile(r"=> Send header: (?:GET|POST) \S+ (HTTP/[0-9.]+)\s*$", re.MULTILINE)


def huge_files(total: int = 1024 * MIB, count: int = 8, seed: int = 16) -> tuple[RandomFile, ...]:
    """``count`` files of ``total / count`` bytes each, every one from its own seed."""
    if total % count:
        raise ValueError(f"{total} bytes do not split into {count} equal files")
    return tuple(RandomFile(f"bench/huge-{number}.bin", total // count, seed + number) for number in range(count))


def time_metric(version: str) -> Metric:
    return Metric(GROUP, f"push, {version}")


def memory_metric(version: str, row: str) -> Metric:
    return Metric(MEMORY_GROUP, f"{version}: {row}", "MiB")


def memory_rows(side: str, grown: dict[str, int]) -> list[tuple[str, float]]:
    """(row, MiB) for each of :data:`ROLE_ROWS`: the growth of that side's roles, summed."""
    found = []
    for row, ours, reference in ROLE_ROWS:
        roles = ours if side == OURS_TLS else reference
        found.append((row, sum(grown.get(role, 0) for role in roles) / MIB))
    return found


def worker_verdict(values: Sequence[float], failed: bool) -> str:
    """The issue's target on the git worker's growth, from every run's reading (MiB)."""
    if failed:
        return "NOT met (a push failed)"
    if not values:
        return "not measured"
    worst = max(values)
    return f"{'met' if worst < LIMIT_MIB else 'NOT met'} (at most {worst:.0f} MiB in {len(values)} push(es))"


def http_version_used(trace: str) -> str | None:
    """The HTTP version of the first request in a curl trace, or None if it shows no request."""
    found = REQUEST_LINE.search(trace)
    return found.group(1) if found else None


def check_version(bench: Bench, url: str, version: str) -> None:
    """One traced ``git ls-remote`` with ``http.version``; BenchError if curl spoke another version."""
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as folder:
        trace = Path(folder) / "curl.trace"
        env = dict(bench.runner.clients.env, GIT_TRACE_CURL=str(trace), GIT_TRACE_CURL_NO_DATA="1")
        result = subprocess.run(["git", "-c", f"http.version={version}", "ls-remote", url, "HEAD"],
                                env=env, capture_output=True, timeout=120)
        used = http_version_used(trace.read_text(errors="replace")) if trace.exists() else None
    if result.returncode != 0 or used != version:
        raise BenchError(f"asked for {version} at {url}, curl used {used or 'nothing'} "
                         f"(exit {result.returncode}): {result.stderr.decode(errors='replace')[-300:]}")


def prepare_client(bench: Bench) -> tuple[Path, str]:
    """A bare clone of the flask input with :func:`huge_files` committed on ``BRANCH``; (client, tip)."""
    client = bench.work / "push-1gib-client.git"
    if not client.exists():
        bench.runner.git("clone", "-q", "--bare", str(bench.flask_git), str(client))
        bench.runner.add_random_files(client, f"refs/heads/{BRANCH}", bench.base, huge_files())
    return client, bench.runner.rev(client, f"refs/heads/{BRANCH}")


def push_1gib(bench: Bench) -> None:
    """Push the 1 GiB commit over HTTP/1.1, then HTTP/2, into a fresh copy per side and run; time and memory.

    A side that fails is marked so in its cells and in the failures, and
    the other side goes on: the reference's numbers still come out while
    ours cannot take the push.  ``core.bigFileThreshold`` spares the client
    a delta search among the eight random files (there is no delta to find).
    """
    client, tip = prepare_client(bench)
    for version in HTTP_VERSIONS:
        failed: set[str] = set()
        metrics = [time_metric(version), *(memory_metric(version, row) for row, _o, _r in ROLE_ROWS)]
        for key in SIDES:
            try:
                check_version(bench, bench.sides[key].git_url(FLASK), version)
            except BenchError as error:
                bench.fail("push-1gib", metrics, key, error)
                failed.add(key)
        for run, side in bench.rounds("push-1gib", SIDES, bench.plan.huge_runs, retake=False):
            if side.key in failed:
                continue
            name = f"push-1gib-{side.key}-{run}"
            served = side.host.add_git(name, bench.flask_git)
            try:
                with FootprintSampler(bench.footprints[side.key]) as sampler:
                    seconds = bench.runner.timed_git(
                        "-c", f"http.version={version}", "-c", "core.bigFileThreshold=64m", "-C", str(client),
                        "push", "-q", side.git_url(name), f"refs/heads/{BRANCH}:{bench.main_ref}", timeout=1800)
                if bench.runner.rev(served, bench.main_ref) != tip:
                    raise BenchError(f"the push did not move {bench.main_ref}")
            except BenchError as error:
                bench.fail("push-1gib", metrics, side.key, error)
                failed.add(side.key)
                continue
            finally:
                shutil.rmtree(served, ignore_errors=True)
            bench.results.add(time_metric(version), side.key, seconds)
            for row, mib in memory_rows(side.key, sampler.growth()):
                bench.results.add(memory_metric(version, row), side.key, mib)
