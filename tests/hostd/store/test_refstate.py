"""Mercurial's ref-state fingerprint (hostd.store.refstate.HgRefState) against real ``hg`` commands.

The git fingerprint is tested with the git pool's caches (tests/hostd/git/test_upload.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hostd.store.refstate import RACY_SECONDS, HgRefState, PerRefState
from hostd.store.storage import hg_command


def _hg(repo: Path, *args: str) -> None:
    env = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": os.environ["PATH"], "HGUSER": "T <t@example.com>"}
    subprocess.run([*hg_command(), "-R", str(repo), *args], env=env, check=True, capture_output=True)


def _age(repo: Path) -> None:
    past = time.time() - 10 * RACY_SECONDS
    for path in [repo, *repo.rglob("*")]:
        os.utime(path, (past, past), follow_symlinks=False)


def _commit(repo: Path, name: str) -> None:
    (repo / name).write_text(name)
    _hg(repo, "commit", "-A", "-m", name)


def test_every_change_that_changes_a_page_changes_the_fingerprint(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    _hg(tmp_path, "init", str(repo))
    _commit(repo, "a")
    _age(repo)
    state = HgRefState()
    seen = [state.fingerprint(repo)]
    changes: list[Callable[[], None]] = [
        lambda: _commit(repo, "b"),
        lambda: _hg(repo, "bookmark", "-r", "0", "feature"),
        lambda: _hg(repo, "phase", "--force", "--secret", "-r", "1"),
        lambda: _hg(repo, "tag", "--local", "-r", "0", "local"),
    ]
    for change in changes:
        change()
        _age(repo)  # the same mtimes as before: only inodes and sizes tell
        seen.append(state.fingerprint(repo))
        assert seen[-1] != seen[-2]
        assert not seen[-1].racy()
    assert state.fingerprint(repo) == seen[-1]
    # Reading (here a log that may refresh hg's caches) changes nothing.
    _hg(repo, "log", "-r", "branch(default)")
    assert state.fingerprint(repo) == seen[-1]


def test_answers_are_kept_per_hg_ref_state(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    _hg(tmp_path, "init", str(repo))
    _commit(repo, "a")
    _age(repo)
    cache = PerRefState(refs=HgRefState())
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        return b"answer %d" % len(calls)

    assert cache.get(repo, "page", compute) == b"answer 1"
    assert cache.get(repo, "page", compute) == b"answer 1"
    _commit(repo, "b")
    assert cache.get(repo, "page", compute) == b"answer 2"  # fresh after a commit, but racy: not kept
    _age(repo)
    assert cache.get(repo, "page", compute) == b"answer 3"
    assert cache.get(repo, "page", compute) == b"answer 3"
