"""Soak (``make soak``): mixed clones, fetches and pushes at concurrency 16
through HAProxy for ``HOSTD_SOAK_SECONDS`` (default 30); reports the errors
(target 0) and every pool worker's memory at the start and the end.

Each client pushes to a branch of its own (git) or a named branch of its own
(hg), so a refusal is an error here, not a lost race.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.conftest import Repos
from tests.chaos.tools import LogMark, Report, children, haproxy_statuses, last_line, pool_master, rss_kib
from tests.e2e.stackfixture import VENV_BIN, Stack

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

CONCURRENCY = 16
SECONDS = float(os.environ.get("HOSTD_SOAK_SECONDS", "30"))


def memory(stack: Stack) -> dict[str, dict[int, int]]:
    """RSS (KiB) of every worker of every pool, by pool and PID."""
    return {pool: {pid: rss_kib(pid) for pid in children(pool_master(stack, pool))} for pool in ("git", "hg", "web")}


class Client:
    """One soak client: its own clones, cycling through the operations."""

    def __init__(self, stack: Stack, repos: Repos, work: Path, index: int) -> None:
        self.stack, self.repos, self.work, self.index = stack, repos, work, index
        self.git_dir, self.hg_dir = work / "git", work / "hg"
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.pushes = 0

    def _run(self, op: str, *args: str, cwd: Path | None = None) -> None:
        result = self.stack.clients.run(*args, cwd=cwd, check=False, timeout=120)
        self.counts[op] += 1
        if result.returncode != 0:
            self.errors.append(f"client {self.index} {op}: exit {result.returncode}: {last_line(result.stderr)}")

    def step(self, n: int) -> None:
        """Operation ``n % 6``: git clone, fetch, push; hg clone, pull, push."""
        hg_cmd = str(VENV_BIN / "hg")
        op = n % 6
        scratch = self.work / f"scratch{n}"
        if op == 0:
            self._run("git clone", "git", "clone", "-q", self.repos.git_small, str(scratch))
        elif op == 1:
            self._run("git fetch", "git", "fetch", "-q", "origin", cwd=self.git_dir)
        elif op == 2:
            self.pushes += 1
            (self.git_dir / "soak.txt").write_text(f"{self.index} {self.pushes}\n")
            self.stack.clients.git("commit", "-q", "-am", f"soak {self.index}.{self.pushes}", cwd=self.git_dir)
            self._run("git push", "git", "push", "-q", "origin", f"HEAD:refs/heads/soak-{self.index}",
                      cwd=self.git_dir)
        elif op == 3:
            self._run("hg clone", hg_cmd, "clone", "-q", "-U", self.repos.hg_small, str(scratch))
        elif op == 4:
            self._run("hg pull", hg_cmd, "pull", "-q", self.repos.hg_small, cwd=self.hg_dir)
        else:
            (self.hg_dir / "soak.txt").write_text(f"{self.index} {self.pushes}\n")
            self.stack.clients.hg("commit", "-q", "-m", f"soak {self.index}.{self.pushes}", cwd=self.hg_dir)
            self._run("hg push", hg_cmd, "push", "-q", "--new-branch", "-b", f"soak-{self.index}",
                      self.repos.hg_small, cwd=self.hg_dir)
        if scratch.exists():
            shutil.rmtree(scratch)

    def prepare(self) -> None:
        git, hg = self.stack.clients.git, self.stack.clients.hg
        git("clone", "-q", self.repos.git_small, str(self.git_dir))
        (self.git_dir / "soak.txt").write_text("start\n")
        git("add", "soak.txt", cwd=self.git_dir)
        hg("clone", "-q", self.repos.hg_small, str(self.hg_dir))
        hg("branch", "-q", f"soak-{self.index}", cwd=self.hg_dir)
        (self.hg_dir / "soak.txt").write_text("start\n")
        hg("add", "soak.txt", cwd=self.hg_dir)

    def run(self, deadline: float) -> None:
        n = self.index  # clients start at different operations
        while time.monotonic() < deadline:
            try:
                self.step(n)
            except Exception as error:  # a failed local commit: report, keep going
                self.errors.append(f"client {self.index}: {type(error).__name__}: {str(error)[:200]}")
            n += 1


def test_soak(stack: Stack, repos: Repos, report: Report, tmp_path: Path) -> None:
    clients = [Client(stack, repos, tmp_path / f"c{i}", i) for i in range(CONCURRENCY)]
    for client in clients:
        client.prepare()
    haproxy = LogMark(stack.settings.log_dir / "haproxy.log")
    before = memory(stack)
    started = time.monotonic()
    threads = [threading.Thread(target=c.run, args=(started + SECONDS,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 180)
    took = time.monotonic() - started
    after = memory(stack)

    counts = sum((c.counts for c in clients), Counter[str]())
    errors = [e for c in clients for e in c.errors]
    statuses = Counter(status // 100 * 100 for _, status in haproxy_statuses(haproxy.lines()))
    report.broken.append(f"nothing: {CONCURRENCY} clients for {SECONDS:g}s ({took:.0f}s with the last operations)")
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    report.saw.append(f"{sum(counts.values())} operations ({mix}); "
                      f"{len(errors)} errors{': ' + '; '.join(errors[:5]) if errors else ''}; HAProxy statuses "
                      + ", ".join(f"{k // 100}xx {v}" for k, v in sorted(statuses.items())))
    for pool in before:
        rows = [f"{pid} {before[pool].get(pid, 0) // 1024}->{after[pool].get(pid, 0) // 1024} MiB"
                for pid in sorted(set(before[pool]) | set(after[pool]))]
        report.evidence.append(f"{pool} workers RSS start->end: {', '.join(rows)}")
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert statuses.get(500, 0) == 0
