"""The import-linter contracts in pyproject.toml catch the layer violations they are for.

Each case runs ``lint-imports`` on a temporary copy of the source with one
import injected, so the check is shown to fail for real, not only to pass on
today's tree.
"""

from __future__ import annotations

import os
import re
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


CONTRACTS = 7
FLOORS = "hostd is floors"
POOLS = "The pool apps are independent"
SERVING = "Serving is independent of operations"
LEAVES = "The leaves import nothing of hostd"
CYCLES = "No import cycles inside any package"
LOGGING = "The logging setup"
LIBRARY = "singlemalt is a library"


def test_unmodified_copy_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{CONTRACTS} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contracts"),
    [
        # A pool app reaching up into operations; serving now reaches them through it.
        ("hostd/web/render.py", "import hostd.ops.tls", {FLOORS, SERVING}),
        # A leaf reaching up into the stores (which import no configuration).
        ("hostd/settings/__init__.py", "import hostd.store.database", {FLOORS}),
        ("hostd/hg/app.py", "import hostd.git.body", {POOLS}),
        ("hostd/ops/maintain.py", "import hostd.serve.worker", {SERVING}),
        ("hostd/names.py", "import hostd.settings", {LEAVES}),
        # git.app imports git.body: a circle inside one package.
        ("hostd/git/body.py", "import hostd.git.app", {CYCLES}),
        # Also a floor broken: the leaves sit under the stores.
        ("hostd/logsetup.py", "import hostd.store.flags", {LOGGING, FLOORS}),
        ("hostd/logsetup.py", "import pymemcache", {LOGGING}),
        ("hostd/logsetup.py", "import psycopg", {LOGGING}),
        # Indirect: singlemalt's package imports its memcache module.
        ("hostd/logsetup.py", "from singlemalt import Scope", {LOGGING}),
        ("singlemalt/target.py", "import hostd.names", {LIBRARY}),
    ],
    ids=["pool-app-imports-operations", "leaf-imports-store", "pool-imports-another-pool",
         "operations-import-serving", "leaf-imports-leaf", "cycle-inside-a-package",
         "logsetup-imports-flags", "logsetup-imports-pymemcache", "logsetup-imports-psycopg",
         "logsetup-imports-memcache-indirectly",
         "singlemalt-imports-hostd"],
)
def test_violation_breaks_the_contract(tmp_path: Path, module: str, line: str, contracts: set[str]) -> None:
    copy = _copy(tmp_path)
    _inject(copy / module, line)
    result = _lint(copy)
    assert result.returncode != 0, result.stdout
    assert f"{CONTRACTS - len(contracts)} kept, {len(contracts)} broken" in result.stdout
    # import-linter folds long contract names over two lines.
    unfolded = result.stdout.replace("\n", " ")
    broken = {name for name in contracts if re.search(re.escape(name) + r"[^\n]*? BROKEN", unfolded)}
    assert broken == contracts, result.stdout
