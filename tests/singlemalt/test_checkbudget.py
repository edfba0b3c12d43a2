"""CheckBudget: token buckets for the worker and for each address."""

from __future__ import annotations

import pytest

from singlemalt.checkbudget import CheckBudget


def _budget(now: list[float], **options: float) -> CheckBudget:
    return CheckBudget(clock=lambda: now[0], **options)


def test_an_address_spends_its_burst_then_its_rate() -> None:
    now = [0.0]
    budget = _budget(now, rate=100, burst=100, address_rate=0.5, address_burst=3)
    assert [budget.take("a") for _ in range(4)] == [True, True, True, False]
    assert budget.take("b")  # another address has its own bucket
    now[0] += 1.9
    assert not budget.take("a")
    now[0] += 0.1
    assert budget.take("a") and not budget.take("a")  # two seconds at 0.5/s: one check


def test_the_worker_budget_bounds_every_address_together() -> None:
    now = [0.0]
    budget = _budget(now, rate=1, burst=2, address_rate=100, address_burst=100)
    assert [budget.take(f"10.0.0.{n}") for n in range(3)] == [True, True, False]
    now[0] += 1
    assert budget.take("10.0.0.9")


def test_a_refusal_spends_nothing() -> None:
    now = [0.0]
    budget = _budget(now, rate=1, burst=1, address_rate=1, address_burst=1)
    assert budget.take("a")
    assert not budget.take("b")  # the worker's bucket is empty: b's token is kept
    now[0] += 1
    assert budget.take("b")


def test_addresses_are_forgotten_oldest_first() -> None:
    now = [0.0]
    budget = _budget(now, rate=100, burst=100, address_rate=1e-9, address_burst=1, addresses=2)
    assert budget.take("a") and budget.take("b") and budget.take("c")  # "a" is forgotten
    assert not budget.take("c") and budget.take("a")
    assert repr(budget) == "<CheckBudget rate=100/s address_rate=1e-09/s>"


@pytest.mark.parametrize("option", ["rate", "burst", "address_rate", "address_burst", "addresses"])
def test_bad_configuration(option: str) -> None:
    with pytest.raises(ValueError):
        CheckBudget(**{option: 0})
