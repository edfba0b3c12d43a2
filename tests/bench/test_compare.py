"""Two VCS benchmark reports side by side (tests.bench.compare): parsing the tables, judging worse."""

from __future__ import annotations

import pytest

from tests.bench.compare import compare, parse, worse
from tests.bench.report import OURS_POOL, OURS_TLS, REF_PLAIN, REF_TLS, Metric, Results, render

CLONE = Metric("git: clone", "first clone")
RATE = Metric("git: throughput", "info/refs", "req/s", True)


def report(clone: tuple[float, float], rate: tuple[float, float]) -> str:
    """A report of the real renderer whose clone and throughput ratios are the given (TLS, plain)."""
    results = Results()
    for metric, (tls, plain) in ((CLONE, clone), (RATE, rate)):
        results.add(metric, OURS_TLS, tls)
        results.add(metric, REF_TLS, 1.0)
        results.add(metric, OURS_POOL, plain)
        results.add(metric, REF_PLAIN, 1.0)
    return render(results, [], title="T", preamble=["how"])


def test_parse_reads_each_pairs_ratio_and_direction() -> None:
    rows = parse(report((0.9, 1.1), (3.0, 4.0)))
    assert rows[("git: clone", "first clone")].ratios == {"ours/ref TLS": 0.9, "ours/ref plain": 1.1}
    assert not rows[("git: clone", "first clone")].higher_is_better
    assert rows[("git: throughput", "info/refs")].higher_is_better
    assert len(rows) == 2  # the targets table has no per-pair measurement rows


@pytest.mark.parametrize(("before", "after", "higher", "expected"), [
    (1.0, 1.1, False, True),
    (1.0, 0.9, False, False),
    (1.0, 1.0, False, False),
    (3.0, 2.0, True, True),
    (3.0, 4.0, True, False),
    (None, 1.0, False, False),
    (1.0, None, False, False),
], ids=["slower", "faster", "same", "fewer-req-s", "more-req-s", "no-before", "no-after"])
def test_worse(before: float | None, after: float | None, higher: bool, expected: bool) -> None:
    assert worse(before, after, higher) is expected


def test_compare_names_what_got_worse() -> None:
    text = compare(report((0.9, 1.0), (3.0, 4.0)), report((1.2, 1.0), (3.5, 3.0)))
    assert "| git: clone | first clone | 0.90× | 1.20× | 1.00× | 1.00× | ours/ref TLS |" in text
    assert "| git: throughput | info/refs | 3.00× | 3.50× | 4.00× | 3.00× | ours/ref plain |" in text


def test_compare_skips_rows_only_one_report_has() -> None:
    text = compare(report((0.9, 1.0), (3.0, 4.0)), "# T\n\n## git: new\n\n| measurement | unit | ours/ref TLS |\n"
                   "| --- | --- | --- |\n| fresh | s | 1.00× |\n")
    assert "fresh" not in text
