"""Part B of the singlemalt benchmark: slow password verifications per clone, through the real stack.

A whole stack (HAProxy, memcached, the gunicorn pools under supervisord) is
started on free loopback ports with the end-to-end tests' fixture; a user
pushes to, then clones, a private hg and a private git repository with the
real clients.  The verifier lives in the gunicorn workers, so it is observed
through the pools' logs (``<data>/log/hg.log`` and ``git.log``): gunicorn
writes one access line per request, ``singlemalt.verify`` one INFO line per
slow (argon2) verification and ``singlemalt.middleware`` one line per
decision, each with the worker's PID.

Every worker has its own in-process cache but they share memcached, so
after the first login no clone or push should need a slow verification,
whichever worker serves it; the benchmark checks that by replacing the
workers (SIGHUP to the pool's gunicorn master, which this benchmark's
supervisord started) before a clone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hostd.ops import stack as hostd_stack
from tests.bench.common import BenchError
from tests.e2e.stackfixture import Stack, start_stack, stop_stack

USER = "benchuser"
PASSWORD = "bench horse battery staple"
REPOS = {"hg": f"{USER}/hgbench", "git": f"{USER}/gitbench"}
SLOW = re.compile(r"singlemalt\.verify \[(\d+)\] slow password verification")
ALLOWED = re.compile(r"singlemalt\.middleware \[(\d+)\] allowed user=")
#: How long the pool logs must stay unchanged before a step's lines are all in.
SETTLE = 0.5
CLIENT_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Observed:
    """What the pool logged for some client operations."""

    requests: int
    unauthorized: int
    slow: int
    workers: frozenset[int]


@dataclass(frozen=True, slots=True)
class Step:
    """One row: a step of the scenario and what it cost."""

    vcs: str
    step: str
    operations: int
    observed: Observed
    target: str

    @property
    def met(self) -> bool:
        return self.target != "0" or self.observed.slow == 0


class PoolLog:
    """The log of one gunicorn pool, read from an offset on."""

    def __init__(self, path: Path, repository: str) -> None:
        self.path = path
        self.access = re.compile(
            r'"[A-Z]+ /' + re.escape(repository) + r'(?:[./?][^"]*)? HTTP/[0-9.]+" (\d{3}) ')

    def offset(self) -> int:
        return self.path.stat().st_size

    def since(self, offset: int, *, timeout: float = 10.0) -> Observed:
        """What was logged after ``offset``, once the log has settled (supervisord copies it)."""
        deadline = time.monotonic() + timeout
        observed = self._read(offset)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            latest = self._read(offset)
            if latest != observed:
                observed, quiet_since = latest, time.monotonic()
            elif observed.requests and time.monotonic() - quiet_since >= SETTLE:
                break
        return observed

    def _read(self, offset: int) -> Observed:
        with self.path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
        statuses = [match.group(1) for match in self.access.finditer(text)]
        return Observed(
            requests=len(statuses),
            unauthorized=statuses.count("401"),
            slow=len(SLOW.findall(text)),
            workers=frozenset(int(pid) for pid in ALLOWED.findall(text)),
        )


def _children(parent: int) -> set[int]:
    """PIDs whose parent is ``parent`` (gunicorn's workers, for its master)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
            found.add(int(entry.name))
    return found


def replace_workers(running: Stack, pool: str, timeout: float = 60.0) -> None:
    """SIGHUP the pool's gunicorn master and wait until only new workers are left.

    New workers start with an empty in-process verification cache; the
    listening socket stays open throughout, so HAProxy sees no outage.
    """
    env = hostd_stack.environment(running.settings)
    result = subprocess.run(
        [env["HOSTD_VENV_BIN"] + "/supervisorctl", "-c", str(hostd_stack.SUPERVISORD_CONF),
         "pid", pool], env=env, capture_output=True, text=True, timeout=30, check=True)
    master = int(result.stdout.strip())
    old = _children(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        workers = _children(master)
        if len(workers) == running.settings.workers and not workers & old:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{pool} workers were not replaced within {timeout:.0f}s")
        time.sleep(0.1)
    hostd_stack.wait_healthy(running.settings, timeout=timeout)


class Scenario:
    """Drives one VCS through: first push, cold clone, warm clones, fresh workers, push."""

    def __init__(self, running: Stack, vcs: str, work: Path, deadline: float) -> None:
        self.running = running
        self.vcs = vcs
        self.work = work / vcs
        self.deadline = deadline
        self.repository = REPOS[vcs]
        self.url = running.url(self.repository + (".git" if vcs == "git" else ""),
                               USER, PASSWORD)
        self.log = PoolLog(running.settings.log_dir / f"{vcs}.log", self.repository)
        self.clones = 0
        self.steps: list[Step] = []

    def run(self, clones: int) -> list[Step]:
        seed = self.work / "seed"
        # flush_all: memcached forgets the login (the other pool may have
        # cached it); this pool's workers have not seen it yet.
        self.running.forget_failed_logins()
        self._step("first push (first login: nothing cached)", "1",
                   [lambda: self._first_push(seed)])
        self.running.forget_failed_logins()
        replace_workers(self.running, self.vcs)
        self._step("clone 1 (memcached flushed, fresh workers)", "1", [self._clone])
        self._step(f"clones 2..{clones} (warm)", "0",
                   [self._clone for _ in range(max(0, clones - 1))])
        replace_workers(self.running, self.vcs)
        last = self.work / f"clone{self.clones + 1}"
        self._step("clone after replacing the workers (memcached warm)", "0", [self._clone])
        self._step("push (warm)", "0", [lambda: self._push(last, "second.txt")])
        return self.steps

    def _step(self, name: str, target: str, operations: list[Callable[[], None]]) -> None:
        start = self.log.offset()
        done = 0
        for operation in operations:
            if time.monotonic() > self.deadline and done:
                break  # out of time: report what was done
            operation()
            done += 1
        if done:
            self.steps.append(Step(self.vcs, name, done, self.log.since(start), target))

    def _first_push(self, seed: Path) -> None:
        if self.vcs == "hg":
            self.running.clients.hg("init", str(seed), timeout=CLIENT_TIMEOUT)
        else:
            self.running.clients.git("init", "-q", str(seed), timeout=CLIENT_TIMEOUT)
        self._push(seed, "first.txt")

    def _clone(self) -> None:
        self.clones += 1
        target = str(self.work / f"clone{self.clones}")
        if self.vcs == "hg":
            self.running.clients.hg("clone", "-q", self.url, target, timeout=CLIENT_TIMEOUT)
        else:
            self.running.clients.git("clone", "-q", self.url, target, timeout=CLIENT_TIMEOUT)

    def _push(self, work: Path, name: str) -> None:
        (work / name).write_text(f"{name}\n")
        clients = self.running.clients
        if self.vcs == "hg":
            clients.hg("commit", "-A", "-m", f"add {name}", cwd=work, timeout=CLIENT_TIMEOUT)
            clients.hg("push", self.url, cwd=work, timeout=CLIENT_TIMEOUT)
        else:
            clients.git("add", name, cwd=work, timeout=CLIENT_TIMEOUT)
            clients.git("commit", "-q", "-m", f"add {name}", cwd=work, timeout=CLIENT_TIMEOUT)
            clients.git("push", "-q", self.url, "HEAD:refs/heads/main", cwd=work,
                        timeout=CLIENT_TIMEOUT)


def run(clones: int = 5, seconds: float = 600.0) -> list[Step]:
    """Start a stack, run the scenario for hg and git, stop the stack."""
    with tempfile.TemporaryDirectory(prefix="singlemalt-bench-") as root:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the report
            running = start_stack(Path(root))
        try:
            deadline = time.monotonic() + seconds
            running.add_user(USER, PASSWORD)
            for vcs, repository in REPOS.items():
                running.hostd("repo", "create", repository, "--vcs", vcs)
            steps: list[Step] = []
            for vcs in REPOS:
                steps += Scenario(running, vcs, Path(root), deadline).run(clones)
            return steps
        finally:
            stop_stack(running)
