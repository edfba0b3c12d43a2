"""Partial clones (issue 16): ``--filter=blob:none`` and ``--filter=tree:0`` of the flask-sized repository.

The reference and the floor serve them because their copies allow filters
(``uploadpack.allowFilter``, set where the harness provisions them:
:func:`allow_filters`).  A server that does not know filters makes git
print "filtering not recognized by server, ignoring" and clone everything,
exit status 0: so every clone is checked for the objects it must lack, and
a side that sent them all is marked failed in its cells (and in the
failures) while the other sides go on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.bench.clientops import Runner
from tests.bench.common import BenchError
from tests.bench.harness import FLASK, GIT_SIDES, Bench
from tests.bench.report import FLOOR, Metric

GROUP = "git: partial clone, flask-sized"
FILTERS = ("blob:none", "tree:0")
#: What a server's repository needs to serve filters to git's own upload-pack (and the
#: lazy fetches of missing objects after a partial clone).
FILTER_CONFIG = (("uploadpack.allowFilter", "true"), ("uploadpack.allowReachableSHA1InWant", "true"))


def metric(spec: str) -> Metric:
    return Metric(GROUP, f"--filter={spec}")


def partial_clone_args(side_key: str, spec: str, url: str, target: Path) -> list[str]:
    """A partial clone without checkout (a checkout would fetch the missing blobs it needs)."""
    return ["clone", "-q", "--no-checkout", f"--filter={spec}", *(["--no-local"] if side_key == FLOOR else []),
            url, str(target)]


def missing_count(rev_list: str) -> int:
    """How many objects ``git rev-list --objects --missing=print`` names as missing (lines ``?SHA``)."""
    return sum(1 for line in rev_list.splitlines() if line.startswith("?"))


def allow_filters(runner: Runner, git_dir: Path) -> None:
    """Let git's upload-pack serve filters from ``git_dir`` (:data:`FILTER_CONFIG`).

    ``git config`` replaces the file by renaming a lock over it, so the input
    a hard-linked copy came from keeps its own configuration.
    """
    for key, value in FILTER_CONFIG:
        runner.git("--git-dir", str(git_dir), "config", key, value)


def clone_partial(bench: Bench) -> None:
    """Each filter, each side, ``plan.quick_runs`` times; every clone must lack what its filter leaves out."""
    expected = bench.runner.served_refs(bench.ours.git_dir(FLASK))
    for spec in FILTERS:
        failed: set[str] = set()
        for _run, side in bench.rounds("clone-partial", GIT_SIDES, bench.plan.quick_runs):
            if side.key in failed:
                continue
            target = bench.scratch("partial")
            try:
                seconds = bench.runner.timed_git(*partial_clone_args(side.key, spec, side.git_url(FLASK), target))
                bench.runner.check_clone(target, expected)
                listed = bench.runner.git("-C", str(target), "rev-list", "--objects", "--all", "--missing=print")
                if missing_count(listed) == 0:
                    raise BenchError(f"--filter={spec}: the clone holds every object (git: \"filtering not "
                                     "recognized by server, ignoring\")")
            except BenchError as error:
                bench.fail("clone-partial", [metric(spec)], side.key, error)
                failed.add(side.key)
                continue
            finally:
                shutil.rmtree(target, ignore_errors=True)
            bench.results.add(metric(spec), side.key, seconds)
