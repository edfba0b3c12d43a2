"""What the records cache saves a warm authenticated request: cached lookups against the queries they replace.

An authenticated clone request reads the user's record (verification), the
repository and the user's grant (authorization). This times those three
lookups through :class:`hostd.store.records.Records` with a connected
change feed (all hits) and through :class:`hostd.store.accounts.Accounts`
(three queries on a pooled connection, over a unix socket to a local
PostgreSQL)::

    PATH="$PWD/.venv/bin:$PATH:/usr/sbin" .venv/bin/python -m tests.bench.records_bench
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hostd.names import RepoName
from hostd.store.accounts import Accounts, Level
from hostd.store.changes import ChangeFeed
from hostd.store.database import Database
from hostd.store.records import Records
from tests import pg


def per_call(what: Callable[[], object], seconds: float = 2.0) -> float:
    """Microseconds per call of ``what``, over about ``seconds`` (after a warm-up)."""
    for _ in range(100):
        what()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            what()
        calls += 100
    return elapsed / calls * 1e6


def main() -> None:
    url = pg.new_database()
    db = Database(url)
    accounts = Accounts(db)
    accounts.add_user("alice", "alice's password")
    accounts.add_user("bob", "bob's password")
    ref = RepoName("alice", "code")
    accounts.add_repo(ref, "git", False)
    accounts.grant("bob", ref, Level.READ)
    feed = ChangeFeed(url)
    records = Records(accounts, feed)
    feed.subscribe(records.invalidate)
    assert feed.wait_connected(10)

    def through(source: Accounts | Records) -> Callable[[], object]:
        def request() -> object:
            repo = source.repo(ref)
            assert repo is not None
            return source.user("bob"), source.level("bob", repo)
        return request

    cached = per_call(through(records))
    queried = per_call(through(accounts))
    print(f"user + repo + grant, cached (Records, feed connected): {cached:8.2f} us per request")
    print(f"user + repo + grant, queried (Accounts, 3 queries):    {queried:8.2f} us per request")
    print(f"saved per warm request: {queried - cached:.1f} us ({queried / cached:.0f}x); "
          f"records: {records.hits} hits, {records.reads} reads")
    feed.close()
    db.close()


if __name__ == "__main__":
    main()
