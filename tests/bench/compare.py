"""Two reports of the VCS benchmark side by side: the ratios of a baseline run next to a new run's.

Issue 17 asks that moving hostd to PostgreSQL make no clone or push ratio
(ours / reference) worse than it was with SQLite.  The ratios, not the
seconds, are compared: each is taken within rounds against a reference
server on the same machine at the same moment, so two runs hours apart can
be compared where their seconds cannot::

    git show HEAD:tests/bench/RESULTS.md > /tmp/sqlite.md
    python -m tests.bench.compare /tmp/sqlite.md /tmp/postgres.md

prints a markdown table of every row both reports measured, with each
pair's ratio before and after, and which got worse.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import markdown_table
from tests.bench.report import PAIRS

_RATIO = re.compile(r"([0-9.]+)×")


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement of a report: its group, its name, and its ratio per pair (None: not measured)."""

    group: str
    measurement: str
    higher_is_better: bool
    ratios: dict[str, float | None]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def parse(text: str) -> dict[tuple[str, str], Row]:
    """Every row of every group table that has ratio columns, keyed by (group, measurement)."""
    rows: dict[tuple[str, str], Row] = {}
    group, header = "", list[str]()
    labels = [label for _ours, _ref, label in PAIRS]
    for line in text.splitlines():
        if line.startswith("## "):
            group, header = line[3:].strip(), []
        elif not line.startswith("|"):
            header = []  # a table ends at the first line that is not one of its rows
        elif not header:
            header = _cells(line)
        elif not line.startswith("| ---"):
            cells = _cells(line)
            if len(cells) != len(header) or not any(label in header for label in labels):
                continue
            ratios: dict[str, float | None] = {}
            for label in labels:
                match = _RATIO.fullmatch(cells[header.index(label)]) if label in header else None
                ratios[label] = float(match.group(1)) if match else None
            rows[(group, cells[0])] = Row(group, cells[0], "higher is better" in cells[1], ratios)
    return rows


def worse(before: float | None, after: float | None, higher_is_better: bool) -> bool:
    """Whether ``after`` is a worse ratio than ``before`` (False when either is missing)."""
    if before is None or after is None:
        return False
    return after < before if higher_is_better else after > before


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def compare(baseline: str, new: str, *, names: Sequence[str] = ("SQLite", "PostgreSQL")) -> str:
    """The markdown table of the rows both reports have: each pair's ratio before and after, and verdict."""
    old_rows, new_rows = parse(baseline), parse(new)
    labels = [label for _ours, _ref, label in PAIRS]
    headers = ["group", "measurement"]
    for label in labels:
        headers += [f"{label}, {names[0]}", f"{label}, {names[1]}"]
    headers.append("worse than before")
    table: list[list[object]] = []
    for key, after in new_rows.items():
        before = old_rows.get(key)
        if before is None:
            continue
        cells: list[object] = [after.group, after.measurement]
        got_worse = []
        for label in labels:
            cells += [_ratio(before.ratios.get(label)), _ratio(after.ratios.get(label))]
            if worse(before.ratios.get(label), after.ratios.get(label), after.higher_is_better):
                got_worse.append(label)
        cells.append(", ".join(got_worse) or "no")
        table.append(cells)
    return markdown_table(headers, table)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("baseline", type=Path, help="the earlier RESULTS.md (e.g. the SQLite run)")
    parser.add_argument("new", type=Path, help="the later RESULTS.md")
    parser.add_argument("--names", default="SQLite,PostgreSQL", help="what to call the two runs in the headers")
    args = parser.parse_args(list(argv))
    first, second = args.names.split(",", 1)
    print(compare(args.baseline.read_text(), args.new.read_text(), names=(first, second)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
