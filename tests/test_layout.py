"""The layout a newcomer reads: every package is on the README's map, and no module outgrows a sitting.

Issue 16 set the limit: every module of the code (singlemalt, hostd, the benchmark harness) under 400 lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
CODE = [ROOT / "singlemalt", ROOT / "hostd", ROOT / "tests" / "bench"]


def _where_things_are() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^### Where things are\n(.*?)^#", readme, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no 'Where things are' section"
    return match[1]


@pytest.mark.parametrize("package", sorted(p.parent.name for p in (ROOT / "hostd").glob("*/__init__.py")))
def test_every_hostd_package_is_on_the_map(package: str) -> None:
    assert f"`hostd/{package}/`" in _where_things_are()


def test_every_top_level_hostd_module_is_on_the_map() -> None:
    section = _where_things_are()
    leaves = sorted(p.name for p in (ROOT / "hostd").glob("*.py") if p.name != "__init__.py")
    assert [name for name in leaves if f"`{name}`" not in section and f"`hostd/{name}`" not in section] == []


def test_every_module_is_under_the_limit() -> None:
    too_long = {}
    for tree in CODE:
        for module in tree.rglob("*.py"):
            lines = len(module.read_text().splitlines())
            if lines >= MAX_LINES and not module.name.startswith("test_"):
                too_long[str(module.relative_to(ROOT))] = lines
    assert too_long == {}
