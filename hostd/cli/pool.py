"""``hostd pool list|drain|ready|add|remove`` and ``hostd traffic``.

Runtime operations on the worker pools through HAProxy's admin socket
(:mod:`hostd.ops.pooladmin`), and the sessions-per-second graph
(:mod:`hostd.ops.traffic`). Nothing here changes haproxy.cfg: what is done here
lasts until HAProxy is restarted, and survives reloads (``make reload``).

    hostd pool add git git2 127.0.0.1:8111   # a second git worker, once healthy
    hostd pool drain git git1                # in-flight clones finish, no new ones
    hostd pool list
    hostd traffic --png traffic.png --minutes 5
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hostd.ops import pooladmin, traffic
from hostd.ops.haproxy import PoolError
from hostd.settings import Settings

if TYPE_CHECKING:
    Command: TypeAlias = Callable[[argparse.Namespace], None]
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    #: The ``add`` helper of :func:`hostd.cli.main.build_parser`.
    AddCommand: TypeAlias = Callable[[SubParsers, str, Command, str], argparse.ArgumentParser]


def _settings(args: argparse.Namespace) -> Settings:
    """The installation's settings; ``--data`` picks the data directory (and
    with it the admin socket, ``<data>/run/haproxy.sock``)."""
    settings = Settings.from_env()
    if args.data:
        settings = replace(settings, data_dir=Path(args.data).resolve())
    return settings


def _reported(func: Command) -> Command:
    """Print a refused operation as one ``hostd: ...`` line and exit 1, like
    every other hostd command (hostd.cli.main cannot be imported from here)."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> None:
        try:
            func(args)
        except PoolError as error:
            print(f"hostd: {error}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper


def _row(server: pooladmin.Server) -> str:
    return (f"{server.key}\t{server.state}\t{server.sessions} now\t{server.total_sessions} total\t"
            f"maxconn {server.maxconn or '-'}\t{server.worker_address}\t{server.check or '-'}")


@_reported
def cmd_pool_list(args: argparse.Namespace) -> None:
    """One line per server: state (UP, DOWN, DRAIN, MAINT), sessions, address, last check."""
    for server in pooladmin.servers(_settings(args), args.backend):
        print(_row(server))


@_reported
def cmd_pool_drain(args: argparse.Namespace) -> None:
    """Stop sending new sessions to a server; its in-flight ones run to their end."""
    settings = _settings(args)
    pooladmin.drain(settings, args.backend, args.server)
    server = pooladmin.server(settings, args.backend, args.server)
    print(f"{server.key} drained: no new sessions, {server.sessions} in flight finish")


@_reported
def cmd_pool_ready(args: argparse.Namespace) -> None:
    """Put a drained or maintained server back into the pool."""
    settings = _settings(args)
    pooladmin.ready(settings, args.backend, args.server)
    print(_row(pooladmin.server(settings, args.backend, args.server)))


@_reported
def cmd_pool_add(args: argparse.Namespace) -> None:
    """Add a worker; it gets traffic once its health check has passed."""
    server = pooladmin.add(_settings(args), args.backend, args.name, args.address, args.maxconn,
                           timeout=args.timeout)
    note = "" if server.healthy else " (gets traffic once its health check passes)"
    print(_row(server) + note)


@_reported
def cmd_pool_remove(args: argparse.Namespace) -> None:
    """Drain a server, wait for its sessions to finish, delete it."""
    pooladmin.remove(_settings(args), args.backend, args.name, timeout=args.timeout)
    print(f"{args.backend}/{args.name} removed")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


@_reported
def cmd_traffic(args: argparse.Namespace) -> None:
    """Sample the session counters, draw sessions/s per backend to a PNG, print a summary."""
    settings = _settings(args)
    pooladmin.worker_pid(settings)  # fail now, not after the run, if HAProxy is not there
    duration = args.minutes * 60
    try:
        stream = traffic.samples(settings, duration, args.interval, servers=args.servers)
    except ValueError as error:
        raise PoolError(str(error)) from None
    run: list[traffic.Sample] = []
    try:
        run.extend(stream)
    except KeyboardInterrupt:  # stop early, keep what was sampled
        pass
    if len(run) < 2:
        raise PoolError("fewer than two samples: nothing to draw (is the stack running?)")
    traffic.draw(traffic.rates(run), args.png)
    print(f"wrote {args.png}: {len(run)} samples over {run[-1].at - run[0].at:.1f}s")
    for line in traffic.summary(run):
        print(line)


def register(top: SubParsers, add: AddCommand) -> None:
    """Add the ``pool`` command group and the ``traffic`` command to the ``hostd`` parser."""
    pool = top.add_parser("pool", help="drain, add and remove workers at run time (HAProxy admin socket)")
    actions = pool.add_subparsers(dest="action", required=True)
    add(actions, "list", cmd_pool_list, "list the servers of every backend with their state") \
        .add_argument("backend", nargs="?", help="only this backend (git, hg, web)")
    for name, func, text in (("drain", cmd_pool_drain, "take a server out of the pool; in-flight sessions finish"),
                             ("ready", cmd_pool_ready, "put a drained or maintained server back in the pool")):
        p = add(actions, name, func, text)
        p.add_argument("backend")
        p.add_argument("server")
    p = add(actions, "add", cmd_pool_add, "add a worker to a backend; it gets traffic once healthy")
    p.add_argument("backend")
    p.add_argument("name")
    p.add_argument("address", help="IP:PORT of the worker (its health checks; its traffic goes over "
                   "<data>/run/BACKEND-NAME.sock when it listens there)")
    p.add_argument("--maxconn", type=_positive_int, default=None,
                   help="its concurrency (default: that of the backend's first server)")
    p.add_argument("--timeout", type=_positive, default=10.0,
                   help="seconds to wait for its first health check (default 10)")
    p = add(actions, "remove", cmd_pool_remove, "drain a server, wait for its sessions, delete it")
    p.add_argument("backend")
    p.add_argument("name")
    p.add_argument("--timeout", type=_positive, default=60.0,
                   help="seconds to wait for in-flight sessions (default 60)")

    p = add(top, "traffic", cmd_traffic, "graph sessions per second per backend to a PNG")
    p.add_argument("--png", type=Path, required=True, metavar="FILE")
    p.add_argument("--minutes", type=_positive, default=5.0, help="how long to sample (default 5; Ctrl-C stops)")
    p.add_argument("--interval", type=_positive, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--servers", action="store_true", help="one line per server instead of per backend")
