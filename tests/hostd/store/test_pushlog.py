"""The push log on PostgreSQL: one statement for a push, several in one transaction for a huge one."""

from __future__ import annotations

import psycopg
import pytest

from hostd.names import RepoName
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.pushlog import CHUNK, PushLog

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
