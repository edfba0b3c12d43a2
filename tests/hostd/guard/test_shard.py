"""The shard gate under WebTest's lint: other shards' repositories get 421, pushes hold the push fence."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import webtest

from hostd.guard.shard import RETRY_AFTER, ShardGate
from hostd.store.accounts import Repo
from hostd.store.fence import exclusive
from hostd.store.storage import Storage
from singlemalt import Action, Allowed, Denied, Target

REPO = Repo("alice", "demo", "git", False, "s1")
PUSH = Target("alice/demo.git", Action.WRITE, "git-receive-pack")
CLONE = Target("alice/demo.git", Action.READ, "git-upload-pack")


class DummyApp:
    """Stands for the git or hg app; counts its calls, and can look at the fence while it answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.during: Callable[[], object] = lambda: None
        self.seen: list[object] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"served\n"
        self.seen.append(self.during())


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(tmp_path)
    storage.path(REPO.ref, "git").mkdir(parents=True)
    return storage


def _app(storage: Storage) -> tuple[webtest.TestApp, DummyApp]:
    inner = DummyApp()
    gate = ShardGate(inner, shard="s1", storage=storage, drain_limit=1 << 20)
    return webtest.TestApp(gate, lint=True), inner


def _decided(repo: Repo, target: Target) -> dict[str, Any]:
    return {"singlemalt.decision": Allowed("write access", resource=repo), "singlemalt.target": target}


def _locked_out(storage: Storage) -> bool:
    """Whether a move could not have the repository now."""
    try:
        with exclusive(storage.path(REPO.ref, "git"), "git", timeout=0):
            return False
    except TimeoutError:
        return True


def test_a_repository_of_this_shard_is_served(storage: Storage) -> None:
    app, inner = _app(storage)
    assert app.get("/alice/demo.git/info/refs", extra_environ=_decided(REPO, CLONE)).body == b"served\n"
    assert inner.calls == 1


def test_a_push_holds_the_fence_until_its_response_is_closed(storage: Storage) -> None:
    app, inner = _app(storage)
    inner.during = lambda: _locked_out(storage)
    assert app.post("/alice/demo.git/git-receive-pack", b"0000", extra_environ=_decided(REPO, PUSH)).body == \
        b"served\n"
    assert inner.seen == [True]
    assert not _locked_out(storage)


def test_a_clone_does_not_wait_for_a_move(storage: Storage) -> None:
    app, inner = _app(storage)
    with exclusive(storage.path(REPO.ref, "git"), "git", timeout=1):
        assert app.get("/alice/demo.git/info/refs", extra_environ=_decided(REPO, CLONE)).body == b"served\n"


def test_a_push_to_a_repository_moved_away_is_refused_to_be_retried(storage: Storage) -> None:
    app, inner = _app(storage)
    storage.path(REPO.ref, "git").rename(storage.root / "elsewhere")
    response = app.post("/alice/demo.git/git-receive-pack", b"0000", extra_environ=_decided(REPO, PUSH),
                        expect_errors=True)
    message = "alice/demo was just moved to another storage shard; nothing changed, push again"
    assert (response.status, response.text) == (f"503 {message}", message + "\n")
    assert inner.calls == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_repository_of_another_shard_is_misdirected(storage: Storage, method: str) -> None:
    app, inner = _app(storage)
    path, environ = "/alice/demo.git/git-receive-pack", _decided(Repo("alice", "demo", "git", False, "s2"), PUSH)
    if method == "POST":
        response = app.post(path, b"0" * 300_000, extra_environ=environ, expect_errors=True)
    else:
        response = app.get(path, extra_environ=environ, expect_errors=True)
    message = "alice/demo is served by another storage shard (s2); try again shortly"
    assert response.status == f"421 {message}"
    assert response.text == message + "\n"
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.headers["Cache-Control"] == "no-store"
    # The push body was read: the client sees the answer, not a reset.
    assert "Connection" not in response.headers
    assert inner.calls == 0


@pytest.mark.parametrize(
    "environ",
    [{}, {"singlemalt.decision": Denied("no access")}, {"singlemalt.decision": Allowed("public")}],
    ids=["no decision", "denied", "allowed without a repository"],
)
def test_without_a_decided_repository_the_app_answers(storage: Storage, environ: dict[str, Any]) -> None:
    # The app itself answers "not found" for what singlemalt did not allow:
    # the gate has nothing to say about a repository nobody resolved.
    app, inner = _app(storage)
    assert app.get("/alice/demo.git/info/refs", extra_environ=environ).body == b"served\n"
    assert inner.calls == 1




def test_a_read_of_a_repository_moved_a_moment_ago_is_told_to_come_back(storage: Storage) -> None:
    """The row still names this shard (the cache has not heard of the move) but the directory is gone:
    503 and Retry-After, as for a push, never the app's 404 that ends the client's push for good."""
    app, inner = _app(storage)
    storage.path(REPO.ref, "git").rename(storage.root / "moved-aside")
    response = app.get("/alice/demo.git/info/refs", extra_environ=_decided(REPO, CLONE), status=503)
    assert response.status == "503 alice/demo was just moved to another storage shard; try again"
    assert response.headers["Retry-After"] == str(RETRY_AFTER) and inner.calls == 0
