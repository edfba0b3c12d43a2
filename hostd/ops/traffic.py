"""Sessions per second per backend over time, drawn to a PNG.

The graph an operator watches while draining a worker or reloading HAProxy:
``hostd traffic --png traffic.png --minutes 5`` samples ``show stat`` on the
admin socket every interval, turns each backend's cumulative session counter
(``stot``) into a rate, and draws one line per backend (git, hg, web), or
per server with ``--servers``, so a re-route shows as one line falling and
another rising at the same moment.

Sampling and the arithmetic are plain functions over :class:`Sample`
values; only :func:`draw` needs matplotlib, and imports it when called, so
the rest of the command line does not pay for it.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hostd.ops import haproxy
from hostd.ops.haproxy import POOLS, PoolError
from hostd.settings import Settings

log = logging.getLogger(__name__)

#: The longest sampling run: the samples are kept in memory until drawn.
MAX_DURATION = 24 * 3600.0
MIN_INTERVAL = 0.2


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative session counters at one instant (``time.time()``)."""

    at: float
    #: "git" -> stot of backend git, or per server: "git/git1" -> ...
    totals: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the graph: a backend's (or server's) rate over time."""

    key: str
    #: (end of the interval, sessions per second during it)
    points: tuple[tuple[float, float], ...]

    @property
    def peak(self) -> float:
        """The highest rate of the run."""
        return max((rate for _, rate in self.points), default=0.0)


def totals(rows: Sequence[Mapping[str, str]], backends: Sequence[str] = POOLS,
           servers: bool = False) -> dict[str, int]:
    """``stot`` per backend, or with ``servers`` per ``backend/server``, from ``show stat`` rows."""
    found: dict[str, int] = {}
    for row in rows:
        if row.get("pxname") not in backends:
            continue
        try:
            count = int(row.get("stot") or 0)
        except ValueError:
            continue
        if row.get("svname") == "BACKEND":
            if not servers:
                found[row["pxname"]] = count
        elif servers and row.get("svname") != "FRONTEND":
            found[f"{row['pxname']}/{row['svname']}"] = count
    return found


def samples(settings: Settings, duration: float, interval: float, *, servers: bool = False,
            clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> Iterator[Sample]:
    """Sample the counters every ``interval`` seconds for ``duration`` seconds.

    Bad bounds raise ValueError here, before any sampling. The samples come
    from a generator, so a caller can stop early (Ctrl-C) and keep what it
    has. A sample the socket cannot answer (the moment a reload swaps
    workers) is skipped rather than ending the run.
    """
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be within (0, {MAX_DURATION:g}] seconds")
    if not MIN_INTERVAL <= interval <= duration:
        raise ValueError(f"interval must be within [{MIN_INTERVAL}, duration] seconds")
    return _sample(settings, int(duration / interval) + 1, interval, servers, clock, sleep)


def _sample(settings: Settings, count: int, interval: float, servers: bool,
            clock: Callable[[], float], sleep: Callable[[float], None]) -> Iterator[Sample]:
    start = clock()
    for tick in range(count):
        if (delay := start + tick * interval - clock()) > 0:
            sleep(delay)
        try:
            rows = haproxy.stat(settings)
        except PoolError as error:
            log.warning("sample skipped: %s", error)
            continue
        yield Sample(clock(), totals(rows, servers=servers))


def rates(run: Sequence[Sample]) -> list[Line]:
    """Sessions per second between consecutive samples, one line per key.

    A counter that went down was reset by a reload (the new worker counts
    from zero), so its new value is what happened since.
    """
    keys = sorted({key for sample in run for key in sample.totals}, key=lambda k: (k.split("/")[0], k))
    lines = []
    for key in keys:
        points = []
        for before, after in zip(run, run[1:], strict=False):
            if key not in before.totals or key not in after.totals or after.at <= before.at:
                continue
            delta = after.totals[key] - before.totals[key]
            if delta < 0:
                delta = after.totals[key]
            points.append((after.at, delta / (after.at - before.at)))
        lines.append(Line(key, tuple(points)))
    return lines


def total_sessions(run: Sequence[Sample], key: str) -> int:
    """Sessions counted under ``key`` during the run (reload resets included)."""
    total = 0
    for before, after in zip(run, run[1:], strict=False):
        if key in before.totals and key in after.totals:
            delta = after.totals[key] - before.totals[key]
            total += after.totals[key] if delta < 0 else delta
    return total


def summary(run: Sequence[Sample]) -> list[str]:
    """One line per backend (or server): sessions in the run, peak and mean rate."""
    span = run[-1].at - run[0].at if len(run) > 1 else 0.0
    out = []
    for line in rates(run):
        count = total_sessions(run, line.key)
        mean = count / span if span > 0 else 0.0
        out.append(f"{line.key}\tsessions {count}\tpeak {line.peak:.1f}/s\tmean {mean:.2f}/s")
    return out


def chart_problem() -> str | None:
    """Why :func:`draw` cannot work here (matplotlib is the optional ``chart`` extra), or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "drawing the chart needs matplotlib: install it with .venv/bin/pip install -e '.[chart]'"
    return None


def draw(lines: Sequence[Line], path: Path, title: str = "HAProxy sessions per second") -> None:
    """Write the line chart as a PNG (matplotlib's Agg renderer: no display needed)."""
    # Imported here: only this command needs matplotlib (an optional extra), and it is slow to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line in lines:
        when = [datetime.fromtimestamp(at, tz=UTC) for at, _ in line.points]
        axes.plot(when, [rate for _, rate in line.points], label=line.key, linewidth=1.5)  # type: ignore[arg-type]
    axes.set_title(title)
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("sessions / s")
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M:%S", tz=UTC))  # type: ignore[no-untyped-call]
    axes.grid(alpha=0.3)
    if lines:
        axes.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.savefig(path, format="png")
