"""The dependencies hostd builds on the internals of are the versions it was tested with.

pyproject.toml pins them with ``==``; an environment holding anything else
(a hand-upgraded virtualenv, a distribution package earlier on the path)
fails here, by name, before the tests of those internals fail obscurely.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PINNED = [
    (match[1], match[2])
    for requirement in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    if (match := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", requirement.strip()))
]


def test_the_packages_hostd_builds_on_are_pinned() -> None:
    assert {name for name, _ in PINNED} >= {"dulwich", "mercurial", "gunicorn", "procrastinate"}


@pytest.mark.parametrize(("name", "version"), PINNED, ids=[name for name, _ in PINNED])
def test_the_installed_version_is_the_pinned_one(name: str, version: str) -> None:
    assert metadata.version(name) == version
