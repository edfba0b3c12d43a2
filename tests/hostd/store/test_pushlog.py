"""The push log on PostgreSQL: one statement for a push, several in one transaction for a huge one."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store.accounts import Accounts
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.pushlog import CHUNK, PushLog
from hostd.store.queue import PUSH_TASK
from hostd.store.spool import Spool

REPO = RepoName("alice", "notes")


@pytest.mark.parametrize("count", [1, CHUNK, 2 * CHUNK + 7], ids=["one-ref", "one-statement", "mirror-push"])
def test_every_update_of_a_push_is_recorded_in_order(database: Database, count: int) -> None:
    Accounts(database).add_user("alice", "password-alice")
    updates = [(f"refs/tags/v{i}", "0" * 40, f"{i:040x}") for i in range(count)]
    log = PushLog(database)
    log.record(REPO, "alice", updates)
    entries = log.entries(REPO, limit=count + 1)
    assert [(e.ref, e.old, e.new) for e in reversed(entries)] == updates
    assert {e.username for e in entries} == {"alice"} and len({e.at for e in entries}) == 1


def test_a_push_that_fails_half_way_records_nothing(database: Database) -> None:
    """A row that cannot be stored (a NUL byte) in the last chunk: the earlier chunks are not kept either."""
    updates = [(f"refs/tags/v{i}", "0" * 40, f"{i:040x}") for i in range(CHUNK + 1)]
    updates[-1] = ("refs/tags/bad\0", "0" * 40, "1" * 40)
    log = PushLog(database)
    with pytest.raises(psycopg.DataError):
        log.record(REPO, "alice", updates)
    assert log.entries(REPO) == []


@pytest.fixture
def down(database: Database) -> Database:
    """The same database as seen by a process that has just found it unreachable (its breaker open for a minute)."""
    unreachable = Database(database.url, retry_interval=60)
    unreachable.mark_down()
    return unreachable


def test_a_push_the_database_cannot_take_is_kept_and_written_by_the_next(
        database: Database, down: Database, tmp_path: Path) -> None:
    """The refs moved while PostgreSQL was away: the entry waits on disk, keeps its time, and is written later."""
    spool = Spool(tmp_path / "spool")
    PushLog(down, spool).record(REPO, "alice", [("refs/heads/main", "0" * 40, "1" * 40)])
    assert len(spool.pending()) == 1

    log = PushLog(database, spool)
    log.record(REPO, "bob", [("refs/heads/main", "1" * 40, "2" * 40)])
    assert spool.pending() == []
    entries = log.entries(REPO)
    assert sorted((e.username, e.old, e.new) for e in entries) == [
        ("alice", "0" * 40, "1" * 40), ("bob", "1" * 40, "2" * 40)]
    by_user = {e.username: e.at for e in entries}
    assert by_user["alice"] <= by_user["bob"]


def test_kept_entries_are_written_when_the_database_is_back_without_another_push(
        database: Database, down: Database, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    PushLog(down, spool).record(REPO, "alice", [("refs/heads/main", "0" * 40, "1" * 40)])
    assert PushLog(down, spool).drain() == 0  # still down: nothing lost, nothing written
    log = PushLog(database, spool)
    assert log.drain() == 1
    assert [(e.username, e.new) for e in log.entries(REPO)] == [("alice", "1" * 40)]


def test_without_a_spool_an_unreachable_database_is_the_callers_to_handle(down: Database) -> None:
    with pytest.raises(DatabaseUnavailable):
        PushLog(down).record(REPO, "alice", [("refs/heads/main", "0" * 40, "1" * 40)])


def _events(database: Database) -> list[dict[str, object]]:
    with database.connection() as conn:
        return [row["args"] for row in conn.execute(
            "SELECT args FROM procrastinate_jobs WHERE task_name = %s AND queue_name = 'repos.s1' ORDER BY id",
            (PUSH_TASK,)).fetchall()]


def test_with_a_queue_each_push_is_one_event_in_the_same_transaction(database: Database) -> None:
    log = PushLog(database, queue="repos.s1")
    log.record(REPO, "alice", [("refs/heads/main", "0" * 40, "1" * 40), ("refs/tags/v1", "0" * 40, "2" * 40)])
    (event,) = _events(database)
    assert event["repo"] == "alice/notes" and event["pusher"] == "alice"
    assert event["updates"] == [["refs/heads/main", "0" * 40, "1" * 40], ["refs/tags/v1", "0" * 40, "2" * 40]]
    assert event["at"] == log.entries(REPO)[0].at


def test_a_push_whose_entries_fail_leaves_no_event(database: Database) -> None:
    log = PushLog(database, queue="repos.s1")
    with pytest.raises(psycopg.DataError):
        log.record(REPO, "alice", [("refs/tags/bad\0", "0" * 40, "1" * 40)])
    assert log.entries(REPO) == [] and _events(database) == []


def test_a_kept_push_gets_its_event_when_written(database: Database, down: Database, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    PushLog(down, spool, queue="repos.s1").record(REPO, "alice", [("refs/heads/main", "0" * 40, "1" * 40)])
    assert _events(database) == []
    assert PushLog(database, spool, queue="repos.s1").drain() == 1
    assert [event["pusher"] for event in _events(database)] == ["alice"]
