"""Repository maintenance: pack, clean up after killed workers, recover.

``hostd maintain [OWNER/NAME]`` runs this for one repository or all of them.
It is safe to run while the pools serve traffic: git's own ``pack-refs`` and
``repack`` take the same ``.lock`` files dulwich does, and only files that
nobody has touched for a while are treated as abandoned.

Why a file is considered abandoned (and not in use):

- ``*.lock`` under a git repository: dulwich and git hold a ref lock only
  while they write that one small file (milliseconds). A lock older than
  ``lock_age`` (default 5 minutes) belongs to a process that died between
  creating and renaming it, typically a worker killed mid-push. Left alone it
  would refuse every later update of that ref forever.
- temporary packs (``objects/tmp_pack_*``, ``objects/pack/tmp*``): a push
  being received writes its temporary pack continuously, so its mtime keeps
  moving; one untouched for ``temp_age`` (default 15 minutes) is an upload
  that was interrupted. Its objects were never referenced by any ref, so
  removing it loses nothing. Those of a worker that was killed are normally
  gone within a second already (:mod:`hostd.git.inflight`: the gunicorn master
  removes them when it reaps the worker); this is the backstop, for a
  write that could not be registered or a registry lost with its run
  directory.
- a clone response being copied into the pack cache
  (``hostd-pack-cache/.tmp-*``, see :mod:`hostd.git.cache`) is written as it
  is sent; one untouched for ``temp_age`` belongs to a killed worker.
- hg: an interrupted transaction leaves ``.hg/store/journal``; ``hg recover``
  rolls it back under the repository lock (and Mercurial itself breaks a
  lock whose holder process is gone).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hostd.git.cache import PACK_CACHE_DIR
from hostd.store.storage import hg_command

LOCK_AGE = 300.0
TEMP_AGE = 900.0


@dataclass
class Report:
    """What maintenance did to one repository, for the operator to read."""

    repository: str
    actions: list[str] = field(default_factory=list)

    def add(self, action: str) -> None:
        self.actions.append(action)


def _older_than(path: Path, age: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > age
    except FileNotFoundError:
        return False


def _git_leftovers(git_dir: Path) -> Iterator[tuple[Path, bool]]:
    """Candidate abandoned files in a bare git repository: (path, is_lock)."""
    for path in (git_dir / "refs").rglob("*.lock"):
        yield path, True
    for name in ("packed-refs.lock", "HEAD.lock", "config.lock", "shallow.lock", "index.lock"):
        yield git_dir / name, True
    for pattern in ("tmp_pack_*", "pack/tmp*", "pack/.tmp-*"):
        yield from ((path, False) for path in (git_dir / "objects").glob(pattern))
    yield from ((path, False) for path in (git_dir / PACK_CACHE_DIR).glob(".tmp-*"))


def remove_stale_git_files(git_dir: Path, report: Report, *, now: float | None = None,
                           lock_age: float = LOCK_AGE, temp_age: float = TEMP_AGE) -> None:
    """Delete abandoned locks and temporary packs (see the module docstring)."""
    now = time.time() if now is None else now
    for path, is_lock in _git_leftovers(git_dir):
        if path.is_file() and _older_than(path, lock_age if is_lock else temp_age, now):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            report.add(f"removed stale {path.relative_to(git_dir)}")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HGRCPATH": "", "HGPLAIN": "1",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)


def maintain_git(git_dir: Path, report: Report) -> None:
    """Clean up, then pack refs and objects with git's own tools."""
    remove_stale_git_files(git_dir, report)
    for command, label in (
        (["git", "pack-refs", "--all", "--prune"], "packed refs"),
        (["git", "repack", "-a", "-d", "-q", "--write-bitmap-index"], "repacked objects"),
        (["git", "prune-packed", "-q"], "pruned packed loose objects"),
    ):
        result = _run(command, git_dir)
        if result.returncode != 0:
            report.add(f"{label} FAILED: {result.stderr.strip()}")
        else:
            report.add(label)


def maintain_hg(hg_dir: Path, report: Report) -> None:
    """Roll back an interrupted transaction, then refresh hg's caches."""
    hg = hg_command()
    if (hg_dir / ".hg" / "store" / "journal").exists():
        result = _run(hg + ["recover"], hg_dir)
        report.add("recovered interrupted transaction" if result.returncode == 0
                   else f"recover FAILED: {result.stderr.strip()}")
    result = _run(hg + ["debugupdatecaches"], hg_dir)
    report.add("updated caches" if result.returncode == 0 else f"cache update FAILED: {result.stderr.strip()}")
