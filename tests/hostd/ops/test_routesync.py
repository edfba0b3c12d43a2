"""The route map from the database: what :func:`sync` writes, and :func:`follow` while HAProxy is away.

Syncing into a running HAProxy and following changes through a whole stack
are tested end to end (tests/e2e/test_shards.py); here, the files and the
failure path, against a real PostgreSQL and no HAProxy at all.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from hostd.names import RepoName
from hostd.ops import routes
from hostd.ops.haproxy import PoolError
from hostd.ops.routesync import Synced, follow, sync
from hostd.settings import Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards
from tests.polling import wait_until


@pytest.fixture
def placed(database: Database, database_url: str, tmp_path: Path) -> Settings:
    """An installation of shard ``default`` whose database places alice/far on s2 and alice/near here."""
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    settings.run_dir.mkdir(parents=True)
    Shards(database).add("s2", git=("10.0.0.2:8101",), hg=("10.0.0.2:8102",))
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_repo(RepoName("alice", "far"), "git", False, shard="s2")
    accounts.add_repo(RepoName("alice", "near"), "hg", False, shard="default")
    return settings


def test_sync_writes_the_files_haproxy_reads(placed: Settings, database: Database) -> None:
    assert sync(placed, Shards(database), push=False) == Synced(1, None, ())
    assert routes.map_path(placed).read_text() == "alice/far s2\n"
    backends = routes.backends_path(placed).read_text()
    assert "backend git-s2" in backends and "10.0.0.2:8101" in backends and "backend git-default" not in backends


def test_a_sync_without_haproxy_fails_after_writing_the_files(placed: Settings, database: Database) -> None:
    with pytest.raises(PoolError, match="is the stack running"):
        sync(placed, Shards(database))
    assert routes.map_path(placed).read_text() == "alice/far s2\n"


def test_follow_retries_while_haproxy_is_unreachable_and_stops_when_told(
        placed: Settings, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "hostd.ops.routesync")
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(placed, database, stop), kwargs={"retry": 0.05})
    follower.start()
    try:
        wait_until("two failed syncs", lambda: caplog.text.count("route map not synced") >= 2, timeout=30)
        # A change is written into the files on the next try, HAProxy or not.
        Accounts(database).add_repo(RepoName("alice", "later"), "git", False, shard="s2")
        wait_until("the new repository is in the map file",
                   lambda: "alice/later s2" in routes.map_path(placed).read_text(), timeout=30)
    finally:
        stop.set()
        follower.join(timeout=10)
    assert not follower.is_alive()
