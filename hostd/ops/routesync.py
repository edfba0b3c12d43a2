"""The route map and the shard backends, from the database to a load balancer.

The database says where each repository lives and which servers each shard
has (:mod:`hostd.store.shards`); :mod:`hostd.ops.routes` renders what
HAProxy reads. :func:`sync` joins them: it writes both files (read at every
start and reload), loads the map into the running HAProxy through its admin
socket, and makes the running shard backends hold the servers the database
names (:func:`hostd.ops.shardpools.reconcile`), all without a reload::

    synced = sync(settings, Shards(db))
    print(synced.summary())

:func:`follow` keeps doing it, for as long as it runs: every change to
repositories or shards, made on any host, reaches the map and the shard
servers of the load balancer it runs beside within moments (``hostd routes
follow``, the stack's ``routes`` program; one beside every HAProxy). So
``hostd pool add git-s2 git3 10.0.0.13:8101``, run anywhere, adds the server
to every load balancer.

A map entry may only name a shard whose backends the running HAProxy has:
HAProxy sends a request for a backend it does not have to its default
backend, the web pool. So what is pushed leaves out the repositories of a
shard added since the last start or reload; they keep going to the home
backends, whose pools answer 421 for them, until ``make reload`` loads the
new backends (the summary says so).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Final

import psycopg

from hostd.ops import haproxy, routes, shardpools
from hostd.settings import Settings
from hostd.store.changes import ChangeFeed
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.shards import Shard, Shards

log = logging.getLogger(__name__)

#: The tables whose changes move routes (None: the feed reconnected, anything may have).
ROUTING_TABLES: Final = (None, "repos", "shards")
#: Seconds between syncs when nothing was heard: catches what a lost
#: notification or a restarted HAProxy would otherwise leave stale.
RESYNC: Final = 60.0
#: Seconds before a sync that failed (database or HAProxy unreachable), or
#: left shard servers draining, is tried again.
RETRY: Final = 2.0
_STEP: Final = 0.5


@dataclass(frozen=True, slots=True)
class Synced:
    """What :func:`sync` did."""

    #: Repositories routed away from the home backends, in the files.
    routes: int
    #: Map entries loaded into the running HAProxy; None: not pushed.
    pushed: int | None
    #: Shards with backends in the files but not (yet) in the running HAProxy.
    awaiting_reload: tuple[str, ...]
    #: What was done to the running shard backends' servers (nothing when not pushed).
    servers: shardpools.Reconciled = shardpools.Reconciled()

    def summary(self) -> str:
        """One line for the operator."""
        text = f"{self.routes} repositories routed to other shards (route files written)"
        if self.pushed is not None:
            text += f"; {self.pushed} map entries loaded into HAProxy"
        if self.awaiting_reload:
            text += (f"; shards {', '.join(self.awaiting_reload)} have no backends in the running HAProxy:"
                     " their repositories go to the home backends until `make reload`")
        if self.servers.summary():
            text += f"; {self.servers.summary()}"
        return text


def sync(settings: Settings, shards: Shards, *, push: bool = True) -> Synced:
    """Write the route files from the database; with ``push``, load the map into the running HAProxy
    and reconcile its shard backends' servers with the database (after the map: a repository
    moved is routed at once, not after the health checks of servers being added)."""
    rows = shards.all()
    every = [routes.ShardServers(s.name, git=_named(s, "git"), hg=_named(s, "hg")) for s in rows]
    others = routes.served_shards(every, home=settings.shard)
    table = shards.routes()
    written = routes.render_map(table, served=others)
    routes.write_route_files(settings, written, routes.render_backends(every, home=settings.shard))
    count = sum(1 for _, shard in table if shard in others)
    if not push:
        return Synced(count, None, ())
    running = others & routes.live_shards(settings)
    pushed = routes.push_map(settings, routes.render_map(table, served=running))
    servers = shardpools.reconcile(settings, shardpools.wanted_servers(rows, home=settings.shard))
    return Synced(count, pushed, tuple(sorted(others - running)), servers)


def _named(shard: Shard, pool: str) -> tuple[routes.Server, ...]:
    """The shard's servers of ``pool`` as shards.cfg names them: by their names in the database."""
    return tuple(routes.Server(address, name=name) for name, address in shard.servers(pool))


def follow(settings: Settings, database: Database, stop: threading.Event, *,
           resync: float = RESYNC, retry: float = RETRY) -> None:
    """Sync the route map now, then on every change to repositories or shards, until ``stop`` is set.

    Changes are heard through the change feed (PostgreSQL ``LISTEN``); a
    burst of them is one sync. A sync that fails (the database or HAProxy
    unreachable) is logged and tried again every ``retry`` seconds: the map
    HAProxy has meanwhile stays as it was, never emptied. A sync that left
    shard servers draining (sessions in flight) or refused is followed by
    another within ``retry`` seconds too, until none is left.
    """
    wanted = threading.Event()
    wanted.set()
    feed = ChangeFeed(settings.database)
    feed.subscribe(lambda table: wanted.set() if table in ROUTING_TABLES else None)
    feed.start()
    shards = Shards(database)
    last: Synced | None = None
    due = time.monotonic() + resync
    try:
        while not stop.is_set():
            # Short waits, so that ``stop`` is heard within one of them.
            if not (wanted.wait(timeout=_STEP) or time.monotonic() >= due):
                continue
            wanted.clear()
            try:
                synced = sync(settings, shards)
            except (DatabaseUnavailable, haproxy.PoolError, psycopg.Error) as error:
                log.warning("route map not synced (%s); trying again in %.0f s", error, retry)
                wanted.set()
                stop.wait(retry)
                continue
            due = time.monotonic() + (retry if synced.servers.pending else resync)
            if synced != last:
                log.info("route map synced: %s", synced.summary())
                last = synced
    finally:
        feed.close()
