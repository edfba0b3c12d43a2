"""Peak resident memory of a process tree, sampled from /proc while a clone runs.

The serving side of a clone is a tree of processes (a gunicorn worker and
any git it spawns; fcgiwrap's ``git http-backend`` → ``git upload-pack`` →
``git pack-objects``), and its children come and go within a request, so
the tree is rebuilt from /proc on every sample (this kernel has no
``/proc/PID/task/TID/children``).
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
