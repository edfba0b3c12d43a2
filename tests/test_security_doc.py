"""SECURITY.md names the test behind each line; every test it names exists.

A test renamed or moved would otherwise leave the threat model pointing at
nothing, and the line it backs would look held when it is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "SECURITY.md").read_text()
# `tests/x/test_y.py` or `tests/x/test_y.py::test_z` (a parametrized id in brackets allowed).
REFERENCES = sorted(set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+)(?:\[[^\]`]*\])?)?`", TEXT)))


def test_the_threat_model_names_tests() -> None:
    assert len(REFERENCES) > 20


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" if n else p for p, n in REFERENCES])
def test_each_named_test_exists(path: str, name: str) -> None:
    module = ROOT / path
    assert module.is_file(), f"SECURITY.md names {path}, which does not exist"
    if name:
        assert re.search(rf"^(?:async )?def {name}\(|^class {name}\b", module.read_text(), re.MULTILINE), (
            f"SECURITY.md names {path}::{name}, which is not defined there")


BARE = sorted(set(re.findall(r"`(test_\w+)`", TEXT)))
DEFINED = {match for module in (ROOT / "tests").rglob("test_*.py")
           for match in re.findall(r"^(?:async )?def (test_\w+)\(", module.read_text(), re.MULTILINE)}


@pytest.mark.parametrize("name", BARE)
def test_each_test_named_alone_exists_somewhere(name: str) -> None:
    assert name in DEFINED, f"SECURITY.md names {name}, which no test module defines"
