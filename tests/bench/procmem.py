"""Peak resident memory of a process tree, sampled from /proc while a clone or push runs.

The serving side of a clone is a tree of processes (a gunicorn worker and
any git it spawns; fcgiwrap's ``git http-backend`` → ``git upload-pack`` →
``git pack-objects``), and its children come and go within a request, so
the tree is rebuilt from /proc on every sample (this kernel has no
``/proc/PID/task/TID/children``).

A *footprint* splits the serving side into roles (our gunicorn workers and
their git children; nginx and the CGI tree) so that a push's growth can be
told per role: the issue's limit is on the git worker itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

PAGE = os.sysconf("SC_PAGE_SIZE")
#: pid -> (parent pid, command name)
ProcessTable = dict[int, tuple[int, str]]
#: (role, pid of the process or tree root) -> resident bytes
Footprint = dict[tuple[str, int], int]
#: The roles of :func:`gunicorn_footprint` and :func:`reference_footprint`.
WORKER, GIT_CHILDREN, NGINX, CGI = "worker", "git children", "nginx", "cgi"


def process_table() -> ProcessTable:
    """Every process's parent and name, read from /proc/PID/stat."""
    table: ProcessTable = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        close = stat.rfind(")")
        table[int(entry.name)] = (int(stat[close + 2:].split(" ", 2)[1]), stat[stat.find("(") + 1:close])
    return table


def children(table: ProcessTable, parent: int) -> list[int]:
    return [pid for pid, (ppid, _name) in table.items() if ppid == parent]


def descendants(table: ProcessTable, root: int) -> set[int]:
    """``root``'s children, their children, and so on (not ``root`` itself)."""
    by_parent: dict[int, list[int]] = {}
    for pid, (ppid, _name) in table.items():
        by_parent.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    pending = list(by_parent.get(root, ()))
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending += by_parent.get(pid, ())
    return found


def rss(pids: Iterable[int]) -> int:
    """Sum of the resident set sizes in bytes (processes gone meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def worker_trees(master: int) -> Callable[[ProcessTable], int]:
    """Largest (worker + its children) RSS among a gunicorn master's workers."""
    def measure(table: ProcessTable) -> int:
        return max((rss({worker} | descendants(table, worker)) for worker in children(table, master)), default=0)
    return measure


def cgi_tree(fcgiwrap: int) -> Callable[[ProcessTable], int]:
    """RSS of everything fcgiwrap spawned to serve requests (its own preforked copies excluded)."""
    def measure(table: ProcessTable) -> int:
        return rss(pid for pid in descendants(table, fcgiwrap) if table[pid][1] != "fcgiwrap")
    return measure


def gunicorn_footprint(master: int) -> Callable[[ProcessTable], Footprint]:
    """Each worker of a gunicorn master on its own, and the processes it spawned (git) as a second role."""
    def measure(table: ProcessTable) -> Footprint:
        found: Footprint = {}
        for worker in children(table, master):
            found[(WORKER, worker)] = rss({worker})
            found[(GIT_CHILDREN, worker)] = rss(descendants(table, worker))
        return found
    return measure


def reference_footprint(nginx: int, fcgiwrap: int) -> Callable[[ProcessTable], Footprint]:
    """nginx (master and workers, which buffer a request body) and what fcgiwrap spawned (http-backend, git)."""
    cgi = cgi_tree(fcgiwrap)

    def measure(table: ProcessTable) -> Footprint:
        return {(NGINX, nginx): rss({nginx} | descendants(table, nginx)), (CGI, fcgiwrap): cgi(table)}
    return measure


def peak_of(footprints: Iterable[Footprint]) -> Footprint:
    """Each (role, pid)'s largest value over the samples."""
    peak: Footprint = {}
    for footprint in footprints:
        for key, value in footprint.items():
            peak[key] = max(peak.get(key, 0), value)
    return peak


def growth(before: Footprint, peak: Footprint) -> dict[str, int]:
    """Per role, the largest growth of any one of its processes (or trees) over its RSS before.

    A process that was not there before (a worker replaced meanwhile, a git
    child) grows from 0, which overstates rather than hides; a role that
    shrank grew by 0.  Taking the largest per role, not the sum, measures
    the one worker that served the request, not an idle sibling.
    """
    found: dict[str, int] = {role: 0 for role, _pid in list(before) + list(peak)}
    for (role, pid), value in peak.items():
        found[role] = max(found[role], value - before.get((role, pid), 0))
    return found


class FootprintSampler:
    """Samples a footprint every ``interval`` seconds in a thread; ``peak`` is each part's largest value."""

    def __init__(self, measure: Callable[[ProcessTable], Footprint], interval: float = 0.05) -> None:
        self._measure = measure
        self.before = measure(process_table())
        self.peak: Footprint = {}
        self._sampler = PeakSampler(self._sample, interval)

    def _sample(self, table: ProcessTable) -> int:
        self.peak = peak_of((self.peak, self._measure(table)))
        return 0

    def growth(self) -> dict[str, int]:
        return growth(self.before, self.peak)

    def __enter__(self) -> FootprintSampler:
        self._sampler.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._sampler.__exit__(kind, error, traceback)


class PeakSampler:
    """Samples ``measure`` every ``interval`` seconds in a thread; ``peak`` is the largest value seen."""

    def __init__(self, measure: Callable[[ProcessTable], int], interval: float = 0.05) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.measure(process_table()))
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
