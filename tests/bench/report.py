"""Results of the side-by-side VCS benchmark, and the markdown that reports them.

Pure: nothing here runs a server or a client.  Samples are collected per
(metric, side), each tagged with the round it was taken in; the report shows
the median of each, the ratios ours / reference for the two like-for-like
pairs (HAProxy TLS against nginx TLS, the pool directly against the reference
server in plain HTTP), compared round by round, and, for each target of
issue 7, whether the measured ratios meet it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tests.bench.common import markdown_table
from tests.bench.interference import Span

#: The sides, in the order their columns appear.
OURS_TLS = "ours-tls"
OURS_POOL = "ours-pool"
REF_TLS = "ref-tls"
REF_PLAIN = "ref-plain"
FLOOR = "floor"
SIDE_LABELS: dict[str, str] = {
    OURS_TLS: "ours, HAProxy TLS",
    OURS_POOL: "ours, pool direct",
    REF_TLS: "reference, nginx TLS",
    REF_PLAIN: "reference, plain",
    FLOOR: "local floor",
}
#: Like-for-like pairs (ours, reference) and the heading of their ratio column.
PAIRS: tuple[tuple[str, str, str], ...] = (
    (OURS_TLS, REF_TLS, "ours/ref TLS"),
    (OURS_POOL, REF_PLAIN, "ours/ref plain"),
)


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of a table: what was measured, in which unit, which way is better."""

    group: str
    row: str
    unit: str = "s"
    higher_is_better: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A target of issue 7: every measured pair's ratio must be within ``limit``."""

    text: str
    metric: Metric
    limit: float


@dataclass
class Results:
    """Every sample taken, failures, and notes explaining missing cells."""

    samples: dict[tuple[Metric, str], list[float]] = field(default_factory=dict)
    #: The round each sample was taken in, in step with ``samples``.
    rounds: dict[tuple[Metric, str], list[int]] = field(default_factory=dict)
    current_round: int = 0
    notes: dict[tuple[Metric, str], str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    #: Markdown sections a scenario writes itself (a table of another shape), shown after the groups.
    sections: list[str] = field(default_factory=list)
    #: Rows of the targets table a scenario judged itself (target, one cell per pair, verdict).
    verdicts: list[list[object]] = field(default_factory=list)

    def new_round(self) -> None:
        """Samples added from now on belong to a new round (one run of every side, back to back)."""
        self.current_round += 1

    def add(self, metric: Metric, side: str, value: float) -> None:
        self.samples.setdefault((metric, side), []).append(value)
        self.rounds.setdefault((metric, side), []).append(self.current_round)

    def mark(self) -> dict[tuple[Metric, str], int]:
        """How many samples each cell holds now, for :meth:`rollback`."""
        return {key: len(values) for key, values in self.samples.items()}

    def rollback(self, mark: dict[tuple[Metric, str], int]) -> None:
        """Drop every sample added since ``mark`` (a round that is taken again)."""
        for key in list(self.samples):
            del self.samples[key][mark.get(key, 0):]
            del self.rounds[key][mark.get(key, 0):]
            if not self.samples[key]:
                del self.samples[key]
                del self.rounds[key]

    def note(self, metric: Metric, side: str, text: str) -> None:
        """Say why a cell is empty (shown instead of a number)."""
        self.notes[(metric, side)] = text

    def median(self, metric: Metric, side: str) -> float | None:
        values = self.samples.get((metric, side))
        return statistics.median(values) if values else None

    def count(self, metric: Metric, side: str) -> int:
        return len(self.samples.get((metric, side), ()))

    def metrics(self) -> list[Metric]:
        """Every metric with a sample or a note, in the order first seen."""
        seen: dict[Metric, None] = {}
        for metric, _side in list(self.samples) + list(self.notes):
            seen.setdefault(metric, None)
        return list(seen)

    def ratio(self, metric: Metric, ours: str, reference: str) -> float | None:
        """The median over the rounds both sides ran in of ours / reference within the round.

        The two sides of a round run back to back, so what drifts between
        rounds (a neighbour's job starting, the host's load) hits both, and
        comparing within rounds cancels it; a ratio of the overall medians
        would carry it.  A round's side with several samples counts by their
        median.  Samples taken outside rounds form one round, and sides that
        share no round are compared by their overall medians.  None when a
        side is missing or the reference is zero.
        """
        mine, theirs = self._by_round(metric, ours), self._by_round(metric, reference)
        if not mine or not theirs:
            return None
        common = mine.keys() & theirs.keys()
        if not common:
            mine, theirs = {0: self.samples[(metric, ours)]}, {0: self.samples[(metric, reference)]}
            common = {0}
        ratios = [statistics.median(mine[number]) / statistics.median(theirs[number])
                  for number in common if statistics.median(theirs[number])]
        return statistics.median(ratios) if ratios else None

    def _by_round(self, metric: Metric, side: str) -> dict[int, list[float]]:
        grouped: dict[int, list[float]] = {}
        for number, value in zip(self.rounds.get((metric, side), ()), self.samples.get((metric, side), ()),
                                 strict=True):
            grouped.setdefault(number, []).append(value)
        return grouped


def format_value(value: float | None, unit: str) -> str:
    """A median as shown in a table: seconds to the millisecond, rates and sizes whole."""
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def format_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def met(ratio: float, limit: float, higher_is_better: bool) -> bool:
    return ratio >= limit if higher_is_better else ratio <= limit


def group_table(results: Results, group: str) -> str:
    """The markdown table of one group: a column per side that has data, then the ratios."""
    metrics = [m for m in results.metrics() if m.group == group]
    sides = [side for side in SIDE_LABELS
             if any((m, side) in results.samples or (m, side) in results.notes for m in metrics)]
    pairs = [(o, r, label) for o, r, label in PAIRS if o in sides and r in sides]
    headers = ["measurement", "unit", *(SIDE_LABELS[side] for side in sides),
               *(label for _o, _r, label in pairs), "runs"]
    rows: list[list[object]] = []
    for metric in metrics:
        cells: list[object] = [metric.row, metric.unit + (" (higher is better)" if metric.higher_is_better else "")]
        for side in sides:
            median = results.median(metric, side)
            cells.append(results.notes.get((metric, side), "—") if median is None
                         else format_value(median, metric.unit))
        cells += [format_ratio(results.ratio(metric, o, r)) for o, r, _label in pairs]
        counts = sorted({results.count(metric, side) for side in sides} - {0})
        cells.append("/".join(str(count) for count in counts) or "0")
        rows.append(cells)
    return markdown_table(headers, rows)


def groups(results: Results) -> list[str]:
    return list(dict.fromkeys(metric.group for metric in results.metrics()))


def target_rows(results: Results, targets: Iterable[Target]) -> list[list[object]]:
    """One row per target: the ratio of each pair and met / NOT met / not measured."""
    rows: list[list[object]] = []
    for target in targets:
        ratios = {label: results.ratio(target.metric, o, r) for o, r, label in PAIRS}
        measured = [ratio for ratio in ratios.values() if ratio is not None]
        if not measured:
            verdict = "not measured"
        elif all(met(ratio, target.limit, target.metric.higher_is_better) for ratio in measured):
            verdict = "met"
        else:
            verdict = "NOT met"
        rows.append([target.text, *(format_ratio(ratio) for ratio in ratios.values()), verdict])
    return rows


def targets_table(results: Results, targets: Sequence[Target], extra: Sequence[Sequence[object]] = ()) -> str:
    """The targets section's table; ``extra`` rows are targets judged some other way."""
    headers = ["target (ours / reference)", *(label for _o, _r, label in PAIRS), "verdict"]
    return markdown_table(headers, target_rows(results, targets) + [list(row) for row in extra])


def render(results: Results, targets: Sequence[Target], *, title: str, preamble: Sequence[str],
           extra_targets: Sequence[Sequence[object]] = (), appendix: Sequence[str] = ()) -> str:
    """The whole RESULTS.md: preamble, a table per group, scenarios' own sections, the targets, the appendix."""
    parts = [f"# {title}", "", *preamble, ""]
    for group in groups(results):
        parts += [f"## {group}", "", group_table(results, group), ""]
    for section in results.sections:
        parts += [section.rstrip(), ""]
    parts += ["## Targets (issues 7, 16 and 17)", "",
              targets_table(results, targets, [*extra_targets, *results.verdicts]), ""]
    if results.remarks:
        parts += ["## Remarks", "", *(f"- {remark}" for remark in results.remarks), ""]
    if results.failures:
        parts += ["## Failures", "", *(f"- {failure}" for failure in results.failures), ""]
    parts += list(appendix)
    return "\n".join(parts).rstrip() + "\n"


def round_order(sides: Sequence[str], number: int) -> list[str]:
    """The order of the sides in round ``number``: as given, reversed in every odd round.

    Interleaving the sides spreads the machine's noise over all of them;
    reversing every other round (ABBA) also cancels what running first or
    last in a round does (a cold page cache, a neighbour's burst).
    """
    return list(sides) if number % 2 == 0 else list(reversed(sides))


def abba_rounds(results: Results, take: Callable[[], Sequence[Span]], scenario: str, sides: Sequence[str],
                runs: int, budget: float) -> Iterator[tuple[int, str]]:
    """(round, side): ``runs`` rounds of ``sides`` in ABBA order (:func:`round_order`), each a new round of ``results``.

    ``take`` gives the timed spans since its last call; it is called before
    and after every round.  A round in which others took a noticeable share
    of a core from an operation (:mod:`tests.bench.interference`) is dropped,
    samples and all, and taken again, ``runs`` times at most, so a machine
    that is never quiet still ends; past ``budget`` seconds (dropped rounds
    included), no new round starts.  Remarks say what happened.
    """
    started, kept, number, dropped = time.monotonic(), 0, 0, 0
    while kept < runs:
        if kept and time.monotonic() - started > budget:
            results.remarks.append(f"{scenario}: stopped after {kept} of {runs} rounds "
                                   f"({time.monotonic() - started:.0f} s, budget {budget:.0f} s)")
            break
        mark = results.mark()
        results.new_round()
        take()
        for key in round_order(sides, number):
            yield number, key
        number += 1
        if any(span.disturbed for span in take()) and dropped < runs:
            results.rollback(mark)
            dropped += 1
            continue
        kept += 1
    if dropped:
        results.remarks.append(f"{scenario}: {dropped} disturbed round(s) taken again")
