"""How much CPU something other than the benchmark took while an operation was timed.

The machine is shared: other jobs run beside the benchmark, and the
hypervisor lends our cores to other machines (steal time).  A neighbour's
burst during a 6 s clone slows that side alone, and alternating the sides
only spreads such bursts; it does not remove them (one run's hg clone took
6.0 s on its local floor where a quiet machine takes 3.3 s).  So the
benchmark reads, around every timed operation, how much CPU the whole
machine used (``/proc/stat``) and how much of it was its own, and repeats a
round in which someone else took a noticeable share (see
:meth:`tests.bench.scenarios.Bench.rounds`).

"Its own" is a cgroup v2 the benchmark moves itself into before it starts
anything: every client and server it starts (our stack, though supervisord
daemonizes; nginx, fcgiwrap, ``hg serve``, their CGI children) is accounted
there, and the kernel counts a cgroup's CPU in nanoseconds.  Without one
(not root, no cgroup2 mounted) only steal time is counted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hostd.ops.haproxy import StackError
from tests.bench.common import BenchError

#: A timed operation is disturbed when others took more than this share of one core during it...
SHARE = 0.10
#: ... and more than this many core-seconds: /proc/stat counts in ticks of 10 ms, and a few ticks
#: either way are accounting noise, not a neighbour (measured on a quiet machine: within ±0.05).
SLACK = 0.05


@dataclass(frozen=True, slots=True)
class Reading:
    """CPU counters at one instant, in core-seconds."""

    busy: float
    steal: float
    ours: float | None


def parse_proc_stat(text: str, ticks_per_second: int) -> tuple[float, float]:
    """(busy, steal) core-seconds from ``/proc/stat``'s ``cpu`` line.

    Busy is user + nice + system: time spent running tasks, which a cgroup's
    usage counts too.  Interrupt time is left out (loopback networking's
    softirqs are mostly the benchmark's own, and no cgroup is charged for
    them); steal is time a runnable vCPU waited for the hypervisor.
    """
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(value) for value in fields[1:]]
            user, nice, system = values[0], values[1], values[2]
            steal = values[7] if len(values) > 7 else 0
            return (user + nice + system) / ticks_per_second, steal / ticks_per_second
    raise ValueError("no cpu line in /proc/stat")


def parse_cpu_stat(text: str) -> float:
    """A cgroup v2 ``cpu.stat``'s ``usage_usec``, in seconds."""
    for line in text.splitlines():
        key, _space, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1_000_000
    raise ValueError("no usage_usec in cpu.stat")


def taken(before: Reading, after: Reading) -> float:
    """Core-seconds others took between two readings: busy time that was not ours, plus steal."""
    stolen = after.steal - before.steal
    if before.ours is None or after.ours is None:
        return stolen
    return max(0.0, (after.busy - before.busy) - (after.ours - before.ours)) + stolen


def disturbed(wall: float, others: float) -> bool:
    return others > SLACK and others > SHARE * wall


@dataclass(slots=True)
class Span:
    """One timed operation: its wall time and the core-seconds others took meanwhile."""

    wall: float = 0.0
    others: float = 0.0

    @property
    def disturbed(self) -> bool:
        return disturbed(self.wall, self.others)


class OwnCgroup:
    """A cgroup v2 holding this process and everything it starts from now on."""

    def __init__(self, path: Path, previous: Path) -> None:
        self.path = path
        self.previous = previous

    @classmethod
    def enter(cls) -> OwnCgroup | None:
        """Move this process into a new cgroup; None when that is not possible here."""
        mount = cgroup2_mount()
        if mount is None:
            return None
        current = _own_cgroup2()
        path = mount / f"hostd-bench-{os.getpid()}"
        try:
            path.mkdir()
            (path / "cgroup.procs").write_text(str(os.getpid()))
            parse_cpu_stat((path / "cpu.stat").read_text())
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path, mount / current.lstrip("/") if current is not None else mount)

    def usage(self) -> float:
        return parse_cpu_stat((self.path / "cpu.stat").read_text())

    def leave(self) -> None:
        """Back to the cgroup this process came from; the cgroup goes once nothing is left in it."""
        with contextlib.suppress(OSError):
            (self.previous / "cgroup.procs").write_text(str(os.getpid()))
            self.path.rmdir()


def cgroup2_mount() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


def _own_cgroup2() -> str | None:
    """This process's cgroup v2 path (the ``0::`` line of /proc/self/cgroup)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    return None


@dataclass
class Monitor:
    """Times operations and says how much CPU others took during each (see :func:`taken`)."""

    cgroup: OwnCgroup | None
    spans: list[Span] = field(default_factory=list)
    total_others: float = 0.0
    total_wall: float = 0.0
    ticks_per_second: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))

    def read(self) -> Reading:
        busy, steal = parse_proc_stat(Path("/proc/stat").read_text(), self.ticks_per_second)
        return Reading(busy, steal, self.cgroup.usage() if self.cgroup is not None else None)

    @contextlib.contextmanager
    def span(self) -> Iterator[Span]:
        """Time the block; the span's ``wall`` and ``others`` are set when it ends."""
        span = Span()
        before, start = self.read(), time.perf_counter()
        try:
            yield span
        finally:
            span.wall = time.perf_counter() - start
            span.others = taken(before, self.read())
            self.spans.append(span)
            self.total_wall += span.wall
            self.total_others += span.others

    def take(self) -> list[Span]:
        """The spans timed since the last call."""
        spans, self.spans = self.spans, []
        return spans


def run_in_cgroup(name: str, output: Path | None,
                  measure: Callable[[Monitor, contextlib.ExitStack], tuple[str, Sequence[str]]]) -> int:
    """A benchmark's ``main`` once its arguments are read: ``measure`` runs in a cgroup of its own, timing with a
    :class:`Monitor` and leaving what it started to ``cleanup``, and gives its report and its failures; once all
    has stopped, the report is printed (and written to ``output``).  Exit status 1 when something could not run
    or failed, else 0.
    """
    with contextlib.ExitStack() as cleanup:
        cgroup = OwnCgroup.enter()  # before anything starts, so that all of it is accounted there
        if cgroup is not None:
            cleanup.callback(cgroup.leave)  # last, once every server has stopped
        try:
            text, failures = measure(Monitor(cgroup), cleanup)
        except (BenchError, StackError, OSError, subprocess.CalledProcessError, AssertionError) as error:
            traceback.print_exc(file=sys.stderr)
            print(f"{name}: could not run: {error}", file=sys.stderr)
            return 1
    print(text)
    if output is not None:
        output.write_text(text)
    return 1 if failures else 0
