"""LogBudget: one report per interval, standing for every occurrence since the last."""

from __future__ import annotations

from singlemalt.logbudget import LogBudget


def test_one_report_per_interval_counts_what_it_stands_for() -> None:
    now = [100.0]
    budget = LogBudget(60.0, clock=lambda: now[0])
    assert budget.spend() == 1  # the first occurrence is reported at once
    assert [budget.spend() for _ in range(3)] == [None, None, None]
    now[0] += 59.9
    assert budget.spend() is None
    now[0] += 0.1
    assert budget.spend() == 5  # four held back, and this one
    assert repr(budget) == "<LogBudget interval=60.0s unreported=0>"
