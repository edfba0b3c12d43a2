"""Fixtures: one real stack for the whole end-to-end session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stackfixture import Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running)
