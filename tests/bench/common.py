"""What every benchmark needs: a private memcached, percentiles, markdown, the machine.

Nothing here measures anything; it only starts what a benchmark needs on
127.0.0.1 (and stops it again by its own PID) and formats results.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.ports import free_ports

MEMCACHED = "/usr/bin/memcached"


class BenchError(Exception):
    """A benchmark could not measure what it meant to (wrong status, no server...)."""


class Memcached:
    """A memcached this benchmark started on a free loopback port.

    ``pause`` (SIGSTOP) makes it hang, ``kill`` makes it gone; both act on
    this process's PID only.  Use it as a context manager so it is always
    stopped.
    """

    def __init__(self) -> None:
        self.port = free_ports(1)[0]
        command = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # memcached refuses to run as root without -u
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise BenchError(f"{MEMCACHED} did not start on port {self.port}") from None
                time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pause(self) -> None:
        """Freeze it: connections are accepted by the kernel but never answered."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.kill()
        self.process.wait(timeout=10)

    def __enter__(self) -> Memcached:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.kill()


@dataclass(frozen=True, slots=True)
class Stats:
    """Latency summary of one case, in microseconds."""

    count: int
    median_us: float
    p95_us: float
    max_us: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        """Nearest-rank median and 95th percentile of nanosecond samples."""
        if not samples_ns:
            raise BenchError("no samples")
        ordered = sorted(samples_ns)

        def rank(p: float) -> float:
            return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))] / 1000

        return cls(len(ordered), rank(0.5), rank(0.95), ordered[-1] / 1000)


def traversable(path: Path, top: Path) -> None:
    """Let the stack's own PostgreSQL pass through ``path`` and its parents up to ``top`` (inclusive).

    Run as root, the stack's cluster runs as the ``postgres`` user, which
    must reach ``<data>/postgres`` (hostd refuses to start otherwise); the
    benchmark keeps its stacks under the project's ``var/``, which is 0700.
    Traversal only (o+x, never listing), and only as root.
    """
    if os.geteuid() != 0:
        return
    for place in [path, *path.parents]:
        place.chmod(place.stat().st_mode | 0o001)
        if place == top:
            return


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; numbers are right-aligned."""
    align = ["---:" if any(_numeric(row[i]) for row in rows) else "---"
             for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(value: object) -> bool:
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and value.replace(",", "").replace(".", "", 1).isdigit()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 10_000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def machine() -> str:
    """One line: usable CPUs (as ``nproc`` counts them) and model, Python and OS."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"nproc {len(os.sched_getaffinity(0))} ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")
