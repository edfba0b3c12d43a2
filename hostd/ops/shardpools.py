"""The servers of the storage shards' backends, from the database into a running HAProxy.

The database lists each shard's git and hg servers, each with its name
(:mod:`hostd.store.shards`); that list is the truth. A load balancer
renders it into ``shards.cfg`` (read at start and reload,
:mod:`hostd.ops.routes`) and, without a reload, applies it to the running
HAProxy as dynamic servers (:mod:`hostd.ops.pooladmin`)::

    wanted = wanted_servers(Shards(db).all(), home=settings.shard)
    done = reconcile(settings, wanted)        # what `hostd routes follow` does on every sync
    print(done.summary())

:func:`reconcile` converges whatever the running HAProxy has, whatever was
missed (a lost notification, a restarted HAProxy, a command that failed
half way): for every shard backend it has, a server the database names and
the backend lacks is added (with the backend's health check; it gets
traffic once a check passes), and a server the database no longer names is
drained and deleted once its sessions have ended. A server still serving
(a clone in flight) is left drained and tried again at the next
reconciliation; so is one whose name the database now gives another
address (the new one is added once the old one is gone).

What it leaves alone: the administrative state of the servers the database
names (``hostd pool drain git-s2 git1`` holds on this load balancer until
``ready``); the home backends (``git``, ``hg``, ``web``); the backends of a
shard the running HAProxy does not have yet (those come with a reload), and
a server whose address is a host name, which HAProxy 2.6 never resolves
for a dynamic server (it comes with a reload, which resolves it).

:func:`apply_add` and :func:`apply_remove` are the same steps for one
server, waiting as ``hostd pool add`` and ``hostd pool remove`` do: the
load balancer a command runs on applies it at once, the others when their
route followers hear of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hostd.names import parse_ip_port
from hostd.ops import pooladmin, routes
from hostd.ops.haproxy import PoolError
from hostd.settings import Settings
from hostd.store.shards import POOLS, Shard

log = logging.getLogger(__name__)

#: Backend name -> {server name: address}.
Wanted = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :func:`reconcile` did, each server as ``backend/name``."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: No longer named (or named with another address), sessions in flight: drained, deleted later.
    draining: tuple[str, ...] = ()
    #: Named with a host name: it comes with a reload.
    unresolved: tuple[str, ...] = ()
    #: What HAProxy refused, one message per server.
    failed: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """Whether a later reconciliation has work left (servers draining, or refusals)."""
        return bool(self.draining or self.failed)

    def summary(self) -> str:
        """One clause per kind of change, or "" when nothing was to do."""
        parts = [f"{label} {', '.join(keys)}" for label, keys in (
            ("added", self.added), ("removed", self.removed), ("draining (sessions in flight)", self.draining),
            ("waiting for a reload (host names)", self.unresolved), ("failed", self.failed)) if keys]
        return "shard servers " + "; ".join(parts) if parts else ""


def wanted_servers(shards: Iterable[Shard], *, home: str) -> dict[str, dict[str, str]]:
    """Every shard backend but the home shard's, with the servers the database names for it."""
    return {routes.shard_backend(pool, shard.name): dict(shard.servers(pool))
            for shard in shards if shard.name != home for pool in POOLS}


def _same(address: str, server: pooladmin.Server) -> bool:
    """Whether the running ``server`` is the one at ``address`` (always, for a host name: it
    was resolved when HAProxy loaded it, and is not compared)."""
    ip = parse_ip_port(address)
    return ip is None or ip == parse_ip_port(server.worker_address)


def reconcile(settings: Settings, wanted: Wanted) -> Reconciled:
    """Make the running HAProxy's shard backends hold exactly the ``wanted`` servers (see the module).

    PoolError when HAProxy is unreachable; a refusal about one server is
    reported in :attr:`Reconciled.failed` and the others go on.
    """
    live = routes.live_backends(settings)
    running: dict[str, dict[str, pooladmin.Server]] = {}
    for server in pooladmin.servers(settings):
        running.setdefault(server.backend, {})[server.name] = server
    added, removed, draining, unresolved, failed = [], [], [], [], []
    for backend in sorted(set(wanted) & live):
        want, have = wanted[backend], running.get(backend, {})
        for name, server in list(have.items()):
            if name in want and _same(want[name], server):
                continue
            try:
                pooladmin.remove(settings, backend, name, timeout=0, last=True)
            except pooladmin.Busy:
                draining.append(server.key)
                continue
            except PoolError as error:
                failed.append(str(error))
                continue
            removed.append(server.key)
            del have[name]
        for name, address in want.items():
            key = f"{backend}/{name}"
            if name in have:
                continue
            ip = parse_ip_port(address)
            if ip is None:
                unresolved.append(key)
                continue
            try:
                _add(settings, backend, name, ip)
            except PoolError as error:
                failed.append(str(error))
                continue
            added.append(key)
    done = Reconciled(*map(tuple, (added, removed, draining, unresolved, failed)))
    for message in failed:
        log.warning("shard server not reconciled: %s", message)
    if done.added or done.removed:
        log.info("%s", done.summary())
    return done


def _add(settings: Settings, backend: str, name: str, address: str, timeout: float = 10.0) -> pooladmin.Server:
    """:func:`pooladmin.add`, or the server another process (this host's route follower, a
    command) has just added by that name at that address."""
    try:
        return pooladmin.add(settings, backend, name, address, timeout=timeout)
    except PoolError:
        present = {server.name: server for server in pooladmin.servers(settings, backend)}.get(name)
        if present is None or parse_ip_port(present.worker_address) != address:
            raise
        return present


def apply_add(settings: Settings, backend: str, name: str, address: str, timeout: float = 10.0) -> pooladmin.Server:
    """Add a server the database now names to this load balancer's shard backend at once.

    Waits up to ``timeout`` seconds for its first health check, as
    :func:`pooladmin.add` does; PoolError when HAProxy is unreachable, has
    no such backend, or refuses.
    """
    if backend not in routes.live_backends(settings):
        raise PoolError(f"the running HAProxy has no backend {backend}")
    ip = parse_ip_port(address)
    if ip is None:
        raise PoolError(f"{address} is a host name: HAProxy resolves it only at a reload")
    return _add(settings, backend, name, ip, timeout)


def apply_remove(settings: Settings, backend: str, name: str, timeout: float = 60.0) -> None:
    """Drain and delete a server the database no longer names from this load balancer, at once.

    Its sessions finish first: :class:`pooladmin.Busy` when some are still
    running after ``timeout`` seconds (it stays drained; the route follower
    deletes it once they have ended). Nothing to do when the server is
    gone already (the route follower was quicker).
    """
    try:
        pooladmin.remove(settings, backend, name, timeout, last=True)
    except pooladmin.Busy:
        raise
    except PoolError:
        if any(server.name == name for server in pooladmin.servers(settings, backend)):
            raise
