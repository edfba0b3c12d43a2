"""A short ``make attack`` (:mod:`tests.chaos.attack`) under ``make test``:
fewer attackers (:data:`~tests.chaos.attackers.SHORT`: 42 connections from
one address, 10 addresses holding 3 each, guessing, gzip bombs) and 8
legitimate clients for ``HOSTD_ATTACK_TEST_SECONDS`` (default 20) under
attack. Every legitimate operation must succeed, and no attacker attempt
may be served or answered with a 5xx. Latency is printed, never asserted: the full run compares it
with a baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.attack import run_scenario, seed, targets
from tests.chaos.attack_report import report
from tests.chaos.attackers import SHORT, Outcome
from tests.e2e.stackfixture import Stack

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

SECONDS = float(os.environ.get("HOSTD_ATTACK_TEST_SECONDS", "20"))
CLIENTS = 8


def test_attack(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repos = seed(stack, tmp_path / "seed")
    target = targets(stack, tmp_path / "seed")
    phases = run_scenario(stack, repos, target, tmp_path / "clients", plan=SHORT, seconds=SECONDS,
                          clients=CLIENTS, baseline=False)
    with capsys.disabled():
        print("\n" + report(phases, SHORT, CLIENTS), flush=True)
    attacked = phases[-1]
    assert attacked.attack is not None
    names = {name for name, _ in attacked.outcomes}
    assert len(names) == 7, f"every kind of attacker made attempts: {sorted(names)}"
    assert attacked.stalled_open >= SHORT.one_address_connections, "the stalled connections were open"
    assert attacked.samples, "the legitimate clients worked during the attack"
    assert attacked.errors == []
    assert {name: n for (name, outcome), n in attacked.outcomes.items() if outcome is Outcome.SERVED} == {}
    # A 5xx means a pool failed or was down: bad input gets a 4xx.
    assert {name: n for (name, outcome), n in attacked.outcomes.items() if outcome is Outcome.ERROR} == {}
