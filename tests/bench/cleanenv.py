"""Running git and hg with no user, system or inherited configuration, so they give the same result everywhere.

Whatever git or hg would otherwise take from the machine (config files, the
user's name, locale, time zone, the date of the day) is pinned here; dates
default to the histories' fixed epoch.

Usage::

    with tempfile.TemporaryDirectory() as home:
        head = run(["git", "-C", path, "rev-parse", "main"], clean_env(Path(home)))
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.bench.history import START_TIME


def clean_env(home: Path) -> dict[str, str]:
    """git and hg with no user, system or inherited configuration: the same result on every machine."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C", "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "repogen", "GIT_AUTHOR_EMAIL": "repogen@example.org",
        "GIT_AUTHOR_DATE": f"@{START_TIME} +0000",
        "GIT_COMMITTER_NAME": "repogen", "GIT_COMMITTER_EMAIL": "repogen@example.org",
        "GIT_COMMITTER_DATE": f"@{START_TIME} +0000",
        "HGRCPATH": "", "HGPLAIN": "1", "HGENCODING": "utf-8", "HGUSER": "repogen <repogen@example.org>",
    }


def run(command: Sequence[str | Path], env: Mapping[str, str], cwd: Path | None = None) -> str:
    """Run ``command`` (git or hg) in ``env``; its standard output, or RuntimeError with its standard error."""
    result = subprocess.run([str(part) for part in command], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout
