"""The job runner on a real PostgreSQL with a real receiver: a push's event becomes a signed delivery.

The runner (procrastinate's worker in a thread, as in the queue pool) runs
in this process; the receiver is an HTTP server on loopback, allowed by
``hook_allow_nets`` as an operator would allow an internal CI server.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.names import RepoName
from hostd.settings import Background, Settings
from hostd.store.database import Database
from hostd.store.hooks import Hooks
from hostd.store.pushlog import PushLog
from hostd.store.queue import queue_stats, repo_queue
from hostd.work.runner import JobRunner
from tests.e2e.hookfixture import Receiver
from tests.hostd.conftest import Site, run_git
from tests.polling import wait_until

SECRET = "s3cret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from Receiver().serve()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, background=Background(
        heartbeat=0.3, stalled_after=1.0, hook_retry_base=0.05, hook_retry_max=0.2,
        hook_allow_nets=(ipaddress.ip_network("127.0.0.0/8"),)))


@pytest.fixture
def runner(settings: Settings, database: Database) -> Iterator[JobRunner]:
    running = JobRunner(settings, database)
    ended = threading.Event()
    running.start(on_exit=ended.set)
    wait_until("the runner registered", lambda: running.problem() is None, timeout=20)
    yield running
    running.stop(timeout=5)
    assert ended.wait(10)


def _push(site: Site, database: Database, settings: Settings, repo: RepoName, message: str) -> tuple[str, str]:
    git_dir = site.storage.path(repo, "git")
    old = run_git(git_dir, "rev-parse", "refs/heads/main")
    tree = run_git(git_dir, "rev-parse", "refs/heads/main^{tree}")
    new = run_git(git_dir, "commit-tree", tree, "-p", old, "-m", message)
    run_git(git_dir, "update-ref", "refs/heads/main", new, old)
    PushLog(database, queue=repo_queue(settings.shard)).record(repo, "alice", [("refs/heads/main", old, new)])
    return old, new


def test_a_push_is_delivered_signed_with_its_commits(
        site: Site, database: Database, settings: Settings, receiver: Receiver,
        runner: JobRunner) -> None:
    state, url = receiver, receiver.url
    repo = site.repo("alice", "notes", "git")
    Hooks(database).add(repo, url, secret=SECRET)
    old, new = _push(site, database, settings, repo, "fix the <b>bug</b>")
    wait_until("the delivery", lambda: len(state.calls) == 1, timeout=30)
    headers, body = state.calls[0].headers, state.calls[0].body
    assert headers["X-Hostd-Event"] == "push" and uuid.UUID(headers["X-Hostd-Delivery"])
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hostd-Signature-256"], expected)
    payload = json.loads(body)
    assert payload["repository"]["full_name"] == "alice/notes" and payload["pusher"] == {"username": "alice"}
    assert payload["refs"] == [{"ref": "refs/heads/main", "before": old, "after": new,
                                "created": False, "deleted": False}]
    assert [c["id"] for c in payload["commits"]] == [new] and payload["commits"][0]["message"] == "fix the <b>bug</b>"


def test_a_receiver_failing_five_times_gets_the_same_delivery_when_it_recovers(
        site: Site, database: Database, settings: Settings, receiver: Receiver,
        runner: JobRunner) -> None:
    state, url = receiver, receiver.url
    state.failures = 5
    repo = site.repo("alice", "notes", "git")
    hook = Hooks(database).add(repo, url)
    _push(site, database, settings, repo, "one")
    wait_until("six attempts", lambda: len(state.calls) == 6, timeout=60)
    ids = state.deliveries()
    bodies = {call.body for call in state.calls}
    assert len(ids) == 1 and len(bodies) == 1
    wait_until("the delivery recorded",
               lambda: Hooks(database).deliveries(hook.hook_id)[0][0].state == "delivered", timeout=10)
    ((delivery, attempts),) = Hooks(database).deliveries(hook.hook_id)
    assert ids == {delivery.delivery_id}
    assert [a.status for a in attempts] == [500] * 5 + [204]


def test_the_jobs_of_a_worker_that_stopped_beating_run_again(
        site: Site, database: Database, settings: Settings, receiver: Receiver) -> None:
    """A job a dead worker held (its heartbeat old, status doing) is taken back and delivered."""
    state, url = receiver, receiver.url
    repo = site.repo("alice", "notes", "git")
    Hooks(database).add(repo, url)
    _push(site, database, settings, repo, "one")
    with database.connection() as conn:
        dead = conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')"
                            " RETURNING id").fetchone()
        assert dead is not None
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", (dead["id"],))
    running = JobRunner(settings, database)
    running.start(on_exit=lambda: None)
    try:
        wait_until("the rescued job's delivery", lambda: len(state.calls) == 1, timeout=30)
    finally:
        running.stop(timeout=5)


def test_queue_stats_count_waiting_jobs_and_their_age(
        site: Site, database: Database, settings: Settings) -> None:
    repo = site.repo("alice", "notes", "git")
    for message in ("one", "two"):
        _push(site, database, settings, repo, message)
    (line,) = queue_stats(database)
    assert (line.queue, line.waiting, line.running, line.scheduled, line.failed) == (
        repo_queue(settings.shard), 2, 0, 0, 0)
    assert 0 <= line.oldest_age < 30


def test_a_stopping_runner_finishes_the_delivery_in_flight(
        site: Site, database: Database, settings: Settings, receiver: Receiver) -> None:
    """SIGTERM's path: no new job is taken, the running one ends and is recorded, nothing is left doing."""
    state, url = receiver, receiver.url
    state.delay = 1.5
    repo = site.repo("alice", "notes", "git")
    hook = Hooks(database).add(repo, url)
    running = JobRunner(settings, database)
    running.start(on_exit=lambda: None)
    _push(site, database, settings, repo, "one")
    wait_until("the delivery in flight", lambda: state.arrivals == 1, timeout=30)
    running.stop(timeout=10)
    assert len(state.calls) == 1
    ((delivery, _),) = Hooks(database).deliveries(hook.hook_id)
    assert delivery.state == "delivered"
    with database.connection() as conn:

        assert conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing'").fetchone() == {
            "n": 0}
