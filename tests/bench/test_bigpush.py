"""The pure parts of the 1 GiB push and partial-clone scenarios: content plan, memory arithmetic, parsing, verdicts.

No timing is asserted and no server is started; ``make bench`` does that.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from tests.bench import bigpush, partial
from tests.bench.clientops import RandomFile, Runner
from tests.bench.harness import MIB, Bench, Plan
from tests.bench.procmem import (
    CGI,
    GIT_CHILDREN,
    NGINX,
    WORKER,
    Footprint,
    FootprintSampler,
    ProcessTable,
    growth,
    gunicorn_footprint,
    peak_of,
    reference_footprint,
)
from tests.bench.report import OURS_POOL, OURS_TLS, REF_TLS, Results
from tests.bench.sides import copy_git
from tests.bench.targets import big_push_verdict, extra_targets, partial_verdict
from tests.bench.vcs_bench import make_plan, parse_args

#: A pid no process has (above the kernel's default pid_max of 4,194,304): its RSS reads as 0.
GONE = 9_000_000


def test_huge_files_are_a_gibibyte_in_equal_files_each_of_its_own_seed() -> None:
    files = bigpush.huge_files()
    assert len(files) == 8 and {item.size for item in files} == {128 * MIB}
    assert sum(item.size for item in files) == 1024 * MIB
    assert len({item.seed for item in files}) == len({item.path for item in files}) == 8
    assert bigpush.huge_files() == files  # the same content in every run
    with pytest.raises(ValueError, match="equal files"):
        bigpush.huge_files(total=10, count=3)


def test_growth_is_per_role_the_largest_of_its_processes() -> None:
    before: Footprint = {(WORKER, 11): 60 * MIB, (WORKER, 12): 80 * MIB, (GIT_CHILDREN, 11): 0}
    peak: Footprint = {(WORKER, 11): 90 * MIB, (WORKER, 12): 81 * MIB, (GIT_CHILDREN, 11): 40 * MIB,
                       (GIT_CHILDREN, 12): 5 * MIB}
    # The worker that served the push grew 30 MiB; its idle sibling's 1 MiB and its larger RSS do not count.
    assert growth(before, peak) == {WORKER: 30 * MIB, GIT_CHILDREN: 40 * MIB}


def test_growth_of_a_new_process_counts_from_zero_and_shrinking_is_zero() -> None:
    before: Footprint = {(WORKER, 11): 60 * MIB, (NGINX, 5): 10 * MIB}
    peak: Footprint = {(WORKER, 11): 50 * MIB, (WORKER, 13): 70 * MIB, (NGINX, 5): 9 * MIB}
    assert growth(before, peak) == {WORKER: 70 * MIB, NGINX: 0}


def test_peak_of_takes_each_parts_largest_value() -> None:
    assert peak_of([{(WORKER, 1): 5}, {(WORKER, 1): 3, (CGI, 2): 7}, {(CGI, 2): 6}]) == {(WORKER, 1): 5, (CGI, 2): 7}


def test_footprints_name_each_worker_and_its_children_and_the_reference_roles() -> None:
    table: ProcessTable = {GONE: (1, "gunicorn"), GONE + 1: (GONE, "gunicorn"), GONE + 2: (GONE, "gunicorn"),
                           GONE + 3: (GONE + 1, "git"), GONE + 10: (1, "nginx"), GONE + 11: (GONE + 10, "nginx"),
                           GONE + 20: (1, "fcgiwrap"), GONE + 21: (GONE + 20, "fcgiwrap"),
                           GONE + 22: (GONE + 21, "git-http-backend")}
    assert set(gunicorn_footprint(GONE)(table)) == {(WORKER, GONE + 1), (GIT_CHILDREN, GONE + 1),
                                                    (WORKER, GONE + 2), (GIT_CHILDREN, GONE + 2)}
    assert set(reference_footprint(GONE + 10, GONE + 20)(table)) == {(NGINX, GONE + 10), (CGI, GONE + 20)}


def test_footprint_sampler_reports_growth_over_the_reading_before() -> None:
    readings = iter([{(WORKER, 1): 100}])

    def measure(_table: ProcessTable) -> Footprint:
        return next(readings, {(WORKER, 1): 150, (GIT_CHILDREN, 1): 20})

    with FootprintSampler(measure, interval=0.001) as sampler:
        pass  # the sampler reads at least once before it stops
    assert sampler.before == {(WORKER, 1): 100}
    assert sampler.growth() == {WORKER: 50, GIT_CHILDREN: 20}


def test_memory_rows_pair_our_roles_with_the_references() -> None:
    grown = {WORKER: 30 * MIB, GIT_CHILDREN: 10 * MIB, NGINX: 2 * MIB, CGI: 200 * MIB}
    ours = dict(bigpush.memory_rows(OURS_TLS, grown))
    ref = dict(bigpush.memory_rows(REF_TLS, grown))
    assert ours[bigpush.WORKER_ROW] == 30 and ref[bigpush.WORKER_ROW] == 2
    assert list(ours.values()) == [30, 10, 40] and list(ref.values()) == [2, 200, 202]


TRACE_H1 = """14:25:02.803153 http.c:725              == Info: ALPN: offers h2,http/1.1
14:25:02.807487 http.c:725              == Info: using HTTP/1.x
14:25:02.810649 http.c:672              => Send header, 0000000227 bytes (0x000000e3)
14:25:02.810665 http.c:684              => Send header: GET /x/info/refs?service=git-upload-pack HTTP/1.1
14:25:02.810668 http.c:684              => Send header: Host: 127.0.0.1:33831
"""
TRACE_H2 = """14:25:02.807480 http.c:725              == Info: ALPN: server accepted h2
14:25:02.810665 http.c:684              => Send header: GET /git/flask.git/info/refs?service=git-upload-pack HTTP/2
14:25:02.810668 http.c:684              => Send header: Host: 127.0.0.1:33831
14:25:02.910668 http.c:684              <= Recv header: HTTP/2 200
"""


@pytest.mark.parametrize(("trace", "version"), [(TRACE_H1, "HTTP/1.1"), (TRACE_H2, "HTTP/2"), ("", None)],
                         ids=["http1.1", "http2", "no-request"])
def test_http_version_used_is_read_from_the_first_request_line(trace: str, version: str | None) -> None:
    assert bigpush.http_version_used(trace) == version


@pytest.mark.parametrize(("values", "failed", "verdict"), [
    ([], False, "not measured"),
    ([12.0, 40.5], False, "met (at most 40 MiB in 2 push(es))"),
    ([12.0, 300.0], False, "NOT met (at most 300 MiB"),
    ([12.0], True, "NOT met (a push failed)"),
], ids=["none", "under", "over", "failed"])
def test_worker_verdict(values: list[float], failed: bool, verdict: str) -> None:
    assert bigpush.worker_verdict(values, failed).startswith(verdict)


def test_big_push_and_partial_verdicts_read_the_results() -> None:
    results = Results()
    assert big_push_verdict(results) == "not measured" and partial_verdict(results) == "not measured"
    results.add(bigpush.memory_metric("HTTP/1.1", bigpush.WORKER_ROW), OURS_TLS, 20.0)
    results.add(bigpush.memory_metric("HTTP/2", bigpush.WORKER_ROW), OURS_TLS, 25.0)
    results.add(bigpush.memory_metric("HTTP/2", bigpush.WORKER_ROW), REF_TLS, 900.0)  # the reference's: no limit
    assert big_push_verdict(results).startswith("met (at most 25 MiB in 2")
    results.note(bigpush.time_metric("HTTP/2"), OURS_TLS, "failed")
    assert big_push_verdict(results) == "NOT met (a push failed)"
    for spec in partial.FILTERS:
        for side in (OURS_TLS, OURS_POOL):
            results.add(partial.metric(spec), side, 0.5)
    assert partial_verdict(results) == "met"
    results.note(partial.metric("tree:0"), OURS_POOL, "failed")
    assert partial_verdict(results).startswith("NOT met")
    rows = extra_targets(results, make_plan(parse_args([])), None, 60.0)
    assert [row[-1] for row in rows[-2:]] == ["NOT met (a push failed)", "NOT met (see Failures)"]


def test_a_failed_side_is_marked_in_its_cells_and_listed() -> None:
    nothing = cast(Any, None)
    bench = Bench(flask_git=Path(), large_git=None, refs_git=Path(), flask_hg=Path(), runner=nothing,
                  results=Results(), sides={}, ours=nothing, ref=nothing, floor=nothing, work=Path(), plan=Plan(),
                  ca=Path(), memory={}, monitor=nothing)
    bench.fail("clone-partial", [partial.metric("blob:none")], OURS_TLS, Exception("filtering not recognized"))
    assert bench.results.notes == {(partial.metric("blob:none"), OURS_TLS): "failed"}
    assert bench.results.failures == ["clone-partial, ours-tls: filtering not recognized"]


def test_plans_run_the_big_push_once() -> None:
    full, quick = make_plan(parse_args([])), make_plan(parse_args(["--quick"]))
    assert full.huge_runs == quick.huge_runs == 1
    assert {"clone-partial", "push-1gib"} <= full.budgets.keys()
    assert parse_args(["--scenarios", "clone-partial,push-1gib"]).scenarios == "clone-partial,push-1gib"


def test_partial_clone_arguments_and_missing_objects() -> None:
    args = partial.partial_clone_args("ref-tls", "blob:none", "https://x/y.git", Path("/t"))
    assert args == ["clone", "-q", "--no-checkout", "--filter=blob:none", "https://x/y.git", "/t"]
    assert "--no-local" in partial.partial_clone_args("floor", "tree:0", "file:///y.git", Path("/t"))
    listed = "a" * 40 + "\n" + "b" * 40 + " README\n?" + "c" * 40 + "\n?" + "d" * 40 + "\n"
    assert partial.missing_count(listed) == 2 and partial.missing_count("a" * 40 + "\n") == 0


def client_runner(home: Path) -> Runner:
    clients = cast(Any, type("FakeClients", (), {"env": {"HOME": str(home), "PATH": "/usr/bin:/bin",
                                                         "GIT_CONFIG_NOSYSTEM": "1"}})())
    return Runner(clients, cast(Any, None))


def test_allow_filters_configures_the_copy_and_not_its_input(tmp_path: Path) -> None:
    source = tmp_path / "input.git"
    subprocess.run(["git", "init", "-q", "--bare", str(source)], check=True)
    before = (source / "config").read_text()
    copy = tmp_path / "copy.git"
    copy_git(source, copy)
    partial.allow_filters(client_runner(tmp_path), copy)
    assert (source / "config").read_text() == before
    for key, value in partial.FILTER_CONFIG:
        shown = subprocess.run(["git", "--git-dir", str(copy), "config", key], capture_output=True, text=True)
        assert shown.stdout.strip() == value


def test_random_files_are_the_same_commit_every_time(tmp_path: Path) -> None:
    runner = client_runner(tmp_path)
    files = (RandomFile("a.bin", 1000, 1), RandomFile("b/c.bin", 3000, 2))
    tips = []
    for name in ("one.git", "two.git"):
        repo = tmp_path / name
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        tips.append(runner.add_random_files(repo, "refs/heads/huge", "", files))
    assert tips[0] == tips[1]
    shown = subprocess.run(["git", "--git-dir", str(tmp_path / "one.git"), "cat-file", "blob", "huge:b/c.bin"],
                           capture_output=True, check=True).stdout
    assert shown == random.Random(2).randbytes(3000)
