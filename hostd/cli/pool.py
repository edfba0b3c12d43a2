"""``hostd pool list|drain|ready|add|remove`` and ``hostd traffic``.

Runtime operations on the worker pools through HAProxy's admin socket
(:mod:`hostd.ops.pooladmin`), and the sessions-per-second graph
(:mod:`hostd.ops.traffic`).

The home backends (``git``, ``hg``, ``web``) are this load balancer's own:
nothing here changes haproxy.cfg, and what is done here lasts until HAProxy
is restarted, and survives reloads (``make reload``). A storage shard's
backends (``git-s2``, ``hg-s2``) are every load balancer's: ``add`` and
``remove`` change the shard's servers in the database, which every route
follower (``hostd routes follow``) applies to its HAProxy, and this load
balancer at once (:mod:`hostd.ops.shardpools`). ``drain`` and ``ready`` act
on this load balancer's HAProxy only, whichever the backend.

    hostd pool add git git2 127.0.0.1:8111   # a second git worker, once healthy
    hostd pool add git-s2 git3 10.0.0.13:8101  # a third server for shard s2, on every load balancer
    hostd pool drain git git1                # in-flight clones finish, no new ones
    hostd pool list
    hostd traffic --png traffic.png --minutes 5
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from hostd.cli.args import SubParsers, add_command, add_group, positive_float, positive_int
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.ops import pooladmin, routes, shardpools, traffic
from hostd.ops.haproxy import PoolError
from hostd.settings import Settings
from hostd.store.shards import Shards

#: What a BACKEND argument may be.
BACKENDS = "git, hg, web, or a shard's git-S or hg-S"


def _settings(args: argparse.Namespace) -> Settings:
    """The installation's settings; ``--data`` picks it (and with it the admin
    socket, ``<data>/run/haproxy.sock``)."""
    return open_installation(args).settings


def _row(server: pooladmin.Server) -> str:
    return (f"{server.key}\t{server.state}\t{server.sessions} now\t{server.total_sessions} total\t"
            f"maxconn {server.maxconn or '-'}\t{server.worker_address}\t{server.check or '-'}")


def cmd_pool_list(args: argparse.Namespace) -> None:
    """One line per server of every backend, the shards' too, as this load balancer's HAProxy has
    them: state (UP, DOWN, DRAIN, MAINT), sessions, address, last check."""
    for server in pooladmin.servers(_settings(args), args.backend):
        print(_row(server))


def cmd_pool_drain(args: argparse.Namespace) -> None:
    """Stop sending new sessions to a server; its in-flight ones run to their end.

    On this load balancer only, a shard's server too (the route follower
    leaves the state of the servers the database names alone); the state
    lasts until ``ready``, through reloads. The backend's last serving
    server only with ``--force``.
    """
    settings = _settings(args)
    with _unless_forced("drains"):
        pooladmin.drain(settings, args.backend, args.server, force=args.force)
    server = pooladmin.server(settings, args.backend, args.server)
    print(f"{server.key} drained: no new sessions, {server.sessions} in flight finish")


def cmd_pool_ready(args: argparse.Namespace) -> None:
    """Put a drained or maintained server back into the pool."""
    settings = _settings(args)
    pooladmin.ready(settings, args.backend, args.server)
    print(_row(pooladmin.server(settings, args.backend, args.server)))


def cmd_pool_add(args: argparse.Namespace) -> None:
    """Add a worker; it gets traffic once its health check has passed.

    To a shard's backend: the server is recorded in the database and added
    here at once (when this HAProxy runs and has the backend), and by every
    other load balancer's route follower.
    """
    shard = routes.parse_shard_backend(args.backend)
    if shard is not None:
        _add_to_shard(args, *shard)
        return
    server = pooladmin.add(_settings(args), args.backend, args.name, args.address, args.maxconn,
                           timeout=args.timeout)
    print(_row(server) + _pending(server))


def _pending(server: pooladmin.Server) -> str:
    return "" if server.healthy else " (gets traffic once its health check passes)"


def _add_to_shard(args: argparse.Namespace, pool: str, shard: str) -> None:
    if args.maxconn is not None:
        raise CommandError(f"{args.backend}: a shard's servers have no --maxconn (the database keeps none; "
                           "the shard's pools queue what they cannot take)")
    # An IP address: HAProxy never resolves the name of a server added at run time.
    address = pooladmin.parse_address(args.address)
    installation = open_installation(args)
    Shards(installation.database).add_server(shard, pool, args.name, address)
    key = f"{args.backend}/{args.name}"
    print(f"{key} {address} added to shard {shard}'s {pool} servers (every load balancer's route follower adds it)")
    try:
        server = shardpools.apply_add(installation.settings, args.backend, args.name, address, args.timeout)
    except PoolError as error:
        print(f"not added to this load balancer now: {error}")
        return
    print(_row(server) + _pending(server))


def cmd_pool_remove(args: argparse.Namespace) -> None:
    """Drain a server, wait for its sessions to finish, delete it.

    From a shard's backend: the server is taken out of the database, and
    drained and deleted here at once (when this HAProxy runs), and by
    every other load balancer's route follower once its sessions end.
    """
    shard = routes.parse_shard_backend(args.backend)
    if shard is not None:
        _remove_from_shard(args, *shard)
        return
    with _unless_forced("removes"):
        pooladmin.remove(_settings(args), args.backend, args.name, timeout=args.timeout, force=args.force)
    print(f"{args.backend}/{args.name} removed")


@contextlib.contextmanager
def _unless_forced(does: str) -> Iterator[None]:
    """The refusal to leave a backend without a serving server, in one line that names ``--force``."""
    try:
        yield
    except pooladmin.LastServer as error:
        raise CommandError(f"{error}; --force {does} it anyway") from None


def _remove_from_shard(args: argparse.Namespace, pool: str, shard: str) -> None:
    installation = open_installation(args)
    if not args.force:
        # As this load balancer sees the shard's servers: with none of them
        # left serving, every request for its repositories would get a 503.
        try:
            with _unless_forced("removes"):
                pooladmin.spare(installation.settings, args.backend, args.name, "remove")
        except PoolError:
            pass  # no HAProxy here, or it has no such server yet: the database decides alone
    Shards(installation.database).remove_server(shard, pool, args.name)
    key = f"{args.backend}/{args.name}"
    print(f"{key} taken out of shard {shard}'s {pool} servers "
          "(every load balancer's route follower drains and deletes it)")
    try:
        shardpools.apply_remove(installation.settings, args.backend, args.name, args.timeout)
    except pooladmin.Busy:
        print(f"drained here, sessions still in flight after {args.timeout:g}s: "
              "the route follower deletes it once they have ended")
        return
    except PoolError as error:
        print(f"not removed from this load balancer now: {error}")
        return
    print(f"{key} removed")


def cmd_traffic(args: argparse.Namespace) -> None:
    """Sample the session counters, draw sessions/s per backend to a PNG, print a summary."""
    settings = _settings(args)
    # Fail now, not after the run, without matplotlib or HAProxy.
    problem = traffic.chart_problem()
    if problem is not None:
        raise CommandError(problem)
    pooladmin.worker_pid(settings)
    duration = args.minutes * 60
    try:
        stream = traffic.samples(settings, duration, args.interval, servers=args.servers)
    except ValueError as error:
        raise CommandError(str(error)) from None
    run: list[traffic.Sample] = []
    try:
        run.extend(stream)
    except KeyboardInterrupt:  # stop early, keep what was sampled
        pass
    if len(run) < 2:
        raise CommandError("fewer than two samples: nothing to draw (is the stack running?)")
    traffic.draw(traffic.rates(run), args.png)
    print(f"wrote {args.png}: {len(run)} samples over {run[-1].at - run[0].at:.1f}s")
    for line in traffic.summary(run):
        print(line)


def _add_force(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"{verb} it even when it is the backend's last serving server "
                             "(every request to the backend then gets a 503)")


def register(top: SubParsers) -> None:
    """Add the ``pool`` command group and the ``traffic`` command to the ``hostd`` parser."""
    pool = add_group(top, "pool", "drain, add and remove workers at run time (HAProxy admin socket)",
                     "hostd pool list", "hostd pool drain git git1")
    add_command(pool, "list", cmd_pool_list, "list the servers of every backend with their state",
                "hostd pool list", "hostd pool list git-s2") \
        .add_argument("backend", nargs="?", metavar="BACKEND", help=f"only this backend ({BACKENDS})")
    for name, func, text in (("drain", cmd_pool_drain,
                              "take a server out of this load balancer's pool; in-flight sessions finish"),
                             ("ready", cmd_pool_ready,
                              "put a drained or maintained server back in this load balancer's pool")):
        p = add_command(pool, name, func, text, f"hostd pool {name} git git1")
        p.add_argument("backend", metavar="BACKEND", help=f"the backend: {BACKENDS}")
        p.add_argument("server", metavar="SERVER", help="the server's name in it (hostd pool list shows them)")
        if name == "drain":
            _add_force(p, "drain")
    p = add_command(pool, "add", cmd_pool_add, "add a worker to a backend; it gets traffic once healthy",
                    "hostd pool add git git2 127.0.0.1:8111", "hostd pool add git-s2 git3 10.0.0.13:8101")
    p.add_argument("backend", metavar="BACKEND",
                   help=f"the backend: {BACKENDS} (a shard's: on every load balancer, through the database)")
    p.add_argument("name", metavar="NAME", help="the new server's name (letters, digits, '.', '_', '-')")
    p.add_argument("address", metavar="IP:PORT", help="the worker's health-check port (its traffic goes over "
                   "<data>/run/BACKEND-NAME.sock when it listens there; a shard's server: its address)")
    p.add_argument("--maxconn", type=positive_int, default=None, metavar="N",
                   help="its concurrency (default: that of the backend's first server; not for a shard's)")
    p.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                   help="seconds to wait for its first health check (default 10)")
    p = add_command(pool, "remove", cmd_pool_remove, "drain a server, wait for its sessions, delete it",
                    "hostd pool remove git git2 --timeout 120", "hostd pool remove git-s2 git3")
    p.add_argument("backend", metavar="BACKEND",
                   help=f"the backend: {BACKENDS} (a shard's: on every load balancer, through the database)")
    p.add_argument("name", metavar="NAME", help="the server to remove")
    p.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="seconds to wait for in-flight sessions (default 60)")
    _add_force(p, "remove")

    p = add_command(top, "traffic", cmd_traffic, "graph sessions per second per backend to a PNG",
                    "hostd traffic --png traffic.png --minutes 5 --servers")
    p.add_argument("--png", type=Path, required=True, metavar="FILE", help="where to write the graph")
    p.add_argument("--minutes", type=positive_float, default=5.0,
                   help="how long to sample (default 5; Ctrl-C stops early and draws what was sampled)")
    p.add_argument("--interval", type=positive_float, default=1.0, metavar="SECONDS",
                   help="seconds between samples (default 1)")
    p.add_argument("--servers", action="store_true", help="one line per server instead of per backend")
