"""The import-linter contracts in pyproject.toml catch the layer violations they are for.

Each case runs ``lint-imports`` on a temporary copy of the source with one
import injected, so the check is shown to fail for real, not only to pass on
today's tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    for package in ("hostd", "singlemalt"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _lint(copy: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts the copy before the editable install of the real tree.
    env = dict(os.environ, PYTHONPATH=str(copy))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=120)


def _inject(module: Path, line: str) -> None:
    text = module.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text
    module.write_text(text.replace(marker, marker + "\n" + line + "\n", 1))


def test_unmodified_copy_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("hostd/logsetup.py", "import hostd.flags", "The logging setup"),
        ("hostd/logsetup.py", "import pymemcache", "The logging setup"),
        # Indirect: singlemalt's package imports its memcache module.
        ("hostd/logsetup.py", "from singlemalt import Scope", "The logging setup"),
        ("singlemalt/target.py", "import hostd.names", "singlemalt is a library"),
    ],
    ids=["logsetup-imports-flags", "logsetup-imports-pymemcache", "logsetup-imports-memcache-indirectly",
         "singlemalt-imports-hostd"],
)
def test_violation_breaks_the_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    copy = _copy(tmp_path)
    _inject(copy / module, line)
    result = _lint(copy)
    assert result.returncode != 0, result.stdout
    assert "1 kept, 1 broken" in result.stdout
    assert contract in result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract)
