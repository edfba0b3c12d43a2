"""The push fence: pushes share it, a move has it alone, and a push that waited finds where its repository went."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hostd.store.fence import LOCK_NAME, Fenced, PushFence, exclusive, lock_path


@pytest.fixture(params=["git", "hg"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / ("demo.git" if request.param == "git" else "demo")
    (path if request.param == "git" else path / ".hg").mkdir(parents=True)
    return path, request.param


def test_the_lock_lives_where_the_vcs_ignores_it(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "a.git", "git") == tmp_path / "a.git" / LOCK_NAME
    assert lock_path(tmp_path / "a", "hg") == tmp_path / "a" / ".hg" / LOCK_NAME


def test_pushes_share_and_a_move_waits_for_them(repo: tuple[Path, str]) -> None:
    path, vcs = repo
    first, second = PushFence.enter(path, vcs), PushFence.enter(path, vcs)
    with pytest.raises(TimeoutError):
        with exclusive(path, vcs, timeout=0.1):
            pass
    first.release()
    second.release()
    second.release()  # idempotent
    with exclusive(path, vcs, timeout=0.1):
        pass


def test_a_push_waits_for_a_move_and_is_refused_if_the_repository_went(repo: tuple[Path, str]) -> None:
    path, vcs = repo
    outcome: list[object] = []

    def push() -> None:
        try:
            outcome.append(PushFence.enter(path, vcs, wait=10))
        except Fenced as error:
            outcome.append(error)

    with exclusive(path, vcs, timeout=1):
        pusher = threading.Thread(target=push)
        pusher.start()
        time.sleep(0.2)
        assert outcome == []  # still waiting
        path.rename(path.with_name("moved-away"))
    pusher.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], Fenced)
    assert "moved away" in str(outcome[0])


def test_no_repository_no_push(tmp_path: Path) -> None:
    with pytest.raises(Fenced, match="no repository"):
        PushFence.enter(tmp_path / "missing.git", "git")


def test_a_push_gives_up_on_a_move_that_never_ends(repo: tuple[Path, str]) -> None:
    path, vcs = repo
    with exclusive(path, vcs, timeout=1), pytest.raises(Fenced, match="stayed locked"):
        PushFence.enter(path, vcs, wait=0.1)
