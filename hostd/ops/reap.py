"""Find gunicorn workers whose master has died (the queue pool's too), and stop them.

A pool's master owns its workers: it restarts them, and the supervisor stops
the master's whole process group. When the master itself dies abruptly
(SIGKILL, SIGABRT, an OOM kill) its workers are re-parented to PID 1 or a
subreaper and nobody owns them any more. They normally stop by themselves
(``deploy/gunicorn.conf.py``: the kernel sends them SIGTERM, and a watchdog
ends them a few seconds later if a request still runs), but a wedged worker
can survive that, keep the pool's listening socket open and so stop the
restarted master from binding it. ``hostd reap`` is the backstop::

    hostd reap --dry-run        # what would be stopped, and why
    hostd reap --grace 10       # TERM, then KILL whatever is left after 10 s

A process is one of this installation's pool processes when its command
line names gunicorn and a ``hostd.serve.wsgi:`` app, or the queue pool's
``hostd.work.pool:queue_app`` (or gunicorn's process title
``[hostd-<pool>]``), and its environment has this installation's
``HOSTD_DATA`` (or none, for the default data directory). It is a worker
when its kernel name (``/proc/PID/comm``) is :data:`WORKER_NAME`, which
``deploy/gunicorn.conf.py`` gives every worker as it is forked; anything
else is a master (a master that is still booting or already stopping
included: it is never taken for a worker). An *orphaned worker* is a
worker whose parent is not a pool process of ours.

Why a name of our own: gunicorn's workers keep the master's handlers of
the signals they do not reset (SIGTTIN and SIGTTOU among them), so which
signals a process handles cannot tell the two apart.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hostd.settings import PROJECT_ROOT

PROC = Path("/proc")

#: The kernel name (``prctl(PR_SET_NAME)``, at most 15 bytes) of every pool
#: worker, set in ``deploy/gunicorn.conf.py``'s ``post_fork``.
WORKER_NAME = "hostd-worker"

_APP = re.compile(r"hostd\.(?:serve\.wsgi|work\.pool):(\w+?)_app|\[hostd-([\w.-]+)\]")


@dataclass(frozen=True, slots=True)
class PoolProcess:
    """One gunicorn process of this installation, as /proc showed it."""

    pid: int
    ppid: int
    #: Clock ticks after boot: with the PID, names the process even if the
    #: PID is reused before a signal is sent.
    start_time: int
    #: git, hg, web (or the name after ``hostd-`` in the process title).
    pool: str
    master: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What was done to one orphaned worker; ``line`` is the report."""

    process: PoolProcess
    action: str
    stopped: bool

    @property
    def line(self) -> str:
        p = self.process
        return f"{p.pid}\t{p.pool} worker, parent {p.ppid} is no master of ours\t{self.action}"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return None


def _stat(proc: Path, pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc/PID/stat; None if it is gone."""
    raw = _read(proc / str(pid) / "stat")
    if raw is None:
        return None
    # The command name (field 2) is in parentheses and may contain anything.
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _is_worker(proc: Path, pid: int) -> bool:
    return (_read(proc / str(pid) / "comm") or b"").rstrip(b"\n") == WORKER_NAME.encode()


def pool_process(proc: Path, pid: int, data_dir: Path) -> PoolProcess | None:
    """The process as a :class:`PoolProcess` if it is one of ours, else None."""
    cmdline = _read(proc / str(pid) / "cmdline")
    if not cmdline or b"gunicorn" not in cmdline:
        return None
    match = _APP.search(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    if match is None:
        return None
    # Only this installation: another stack's workers (tests run several on
    # one host) are none of our business. An unreadable environment means
    # another user's process.
    environ = _read(proc / str(pid) / "environ")
    if environ is None:
        return None
    variables = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
    # Without HOSTD_DATA a pool serves the default data directory (hostd.settings).
    theirs = variables.get(b"HOSTD_DATA", os.fsencode(PROJECT_ROOT / "var"))
    if theirs != os.fsencode(data_dir):
        return None
    stat = _stat(proc, pid)
    if stat is None or stat[0] == "Z":
        return None
    return PoolProcess(pid=pid, ppid=stat[1], start_time=stat[2], pool=match[1] or match[2],
                       master=not _is_worker(proc, pid))


def scan(data_dir: Path, proc: Path = PROC) -> list[PoolProcess]:
    """Every live gunicorn process (master or worker) of the installation at ``data_dir``."""
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            process = pool_process(proc, int(entry.name), data_dir)
            if process is not None:
                found.append(process)
    return sorted(found, key=lambda p: p.pid)


def orphans(processes: Iterable[PoolProcess]) -> list[PoolProcess]:
    """The workers among ``processes`` whose parent is not one of them."""
    processes = list(processes)
    ours = {p.pid for p in processes}
    return [p for p in processes if not p.master and p.ppid not in ours]


def _alive(proc: Path, process: PoolProcess) -> bool:
    stat = _stat(proc, process.pid)
    return stat is not None and stat[0] != "Z" and stat[2] == process.start_time


def _signal(proc: Path, process: PoolProcess, signum: int, kill: Callable[[int, int], None]) -> bool:
    """Send ``signum`` if the PID still names the same process; False if it is gone."""
    if not _alive(proc, process):
        return False
    try:
        kill(process.pid, signum)
    except ProcessLookupError:
        return False
    return True


def _wait(proc: Path, targets: list[PoolProcess], timeout: float) -> list[PoolProcess]:
    """Poll until every target has exited or ``timeout``; the ones still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in targets if _alive(proc, p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _alive(proc, p)]
    return alive


def reap(data_dir: Path, *, grace: float = 10.0, dry_run: bool = False, proc: Path = PROC,
         kill: Callable[[int, int], None] = os.kill) -> list[Outcome]:
    """Stop the installation's orphaned workers: SIGTERM to all at once, then
    SIGKILL to those still running after ``grace`` seconds. One
    :class:`Outcome` per orphan; ``stopped`` is False only for a process
    that outlived SIGKILL (uninterruptible sleep) and for a dry run."""
    found = orphans(scan(data_dir, proc))
    if dry_run:
        return [Outcome(p, f"would send TERM, then KILL after {grace:g}s", False) for p in found]
    started = time.monotonic()
    termed = [p for p in found if _signal(proc, p, signal.SIGTERM, kill)]
    outcomes = [Outcome(p, "exited before TERM", True) for p in found if p not in termed]
    stubborn = _wait(proc, termed, grace)
    took = time.monotonic() - started
    outcomes += [Outcome(p, f"TERM: exited within {took:.1f}s", True) for p in termed if p not in stubborn]
    killed = [p for p in stubborn if _signal(proc, p, signal.SIGKILL, kill)]
    survivors = _wait(proc, killed, 5.0)
    outcomes += [Outcome(p, f"TERM: exited after {grace:g}s", True) for p in stubborn if p not in killed]
    outcomes += [Outcome(p, f"TERM: still running after {grace:g}s; KILL: stopped", True)
                 for p in killed if p not in survivors]
    outcomes += [Outcome(p, f"TERM: still running after {grace:g}s; KILL: STILL RUNNING", False)
                 for p in survivors]
    return sorted(outcomes, key=lambda o: o.process.pid)
