"""``hostd shard list|add|drain|undrain|weight|servers`` and ``hostd routes sync|show``.

Shards are the storage hosts repositories live on (:mod:`hostd.store.shards`);
the route map tells every load balancer which shard holds which repository
(:mod:`hostd.ops.routes`)::

    hostd shard add s2 --weight 2 --git 10.0.0.12:8101 --hg 10.0.0.12:8102
    hostd shard servers s2 --git 10.0.0.12:8101 --git 10.0.0.13:8101 --hg 10.0.0.12:8102
    hostd shard drain default          # no new repositories there
    hostd shard list
    hostd routes sync                  # the map from the database, into HAProxy
    hostd routes follow                # ...and on every change, until stopped
"""

from __future__ import annotations

import argparse
import signal
import threading

from hostd import logsetup
from hostd.cli.args import SubParsers, add_command, add_group
from hostd.cli.installation import open_installation
from hostd.ops import routes, routesync
from hostd.settings import is_shard_name
from hostd.store.shards import Shard, Shards


def shard_name(text: str) -> str:
    """A shard's name as :func:`hostd.settings.is_shard_name` defines it."""
    if not is_shard_name(text):
        raise argparse.ArgumentTypeError(
            f"invalid shard name {text!r}: 1-32 of a-z, 0-9 and '-', starting with a letter")
    return text


def weight(text: str) -> int:
    """0-1000: the share of new repositories, relative to the other shards."""
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a weight (a whole number 0-1000)")
    return int(text)


def _line(shard: Shard) -> str:
    servers = ",".join(shard.git_servers + shard.hg_servers) or "-"
    return f"{shard.name}\t{shard.state}\tweight {shard.weight}\t{shard.repositories} repositories\t{servers}"


def _shards(args: argparse.Namespace) -> Shards:
    return Shards(open_installation(args).database)


def cmd_shard_list(args: argparse.Namespace) -> None:
    """One line per shard: name, state, weight, repositories, servers."""
    for shard in _shards(args).all():
        print(_line(shard))


def cmd_shard_add(args: argparse.Namespace) -> None:
    """Register a shard; it takes new repositories at once unless its weight is 0."""
    print(_line(_shards(args).add(args.shard, weight=args.weight, git=tuple(args.git), hg=tuple(args.hg))))


def cmd_shard_drain(args: argparse.Namespace) -> None:
    """No new repositories on the shard; those it has stay and are served."""
    print(_line(_shards(args).drain(args.shard)))


def cmd_shard_undrain(args: argparse.Namespace) -> None:
    """The shard takes new repositories again."""
    print(_line(_shards(args).drain(args.shard, draining=False)))


def cmd_shard_weight(args: argparse.Namespace) -> None:
    """Change the shard's share of new repositories."""
    print(_line(_shards(args).set_weight(args.shard, args.weight)))


def cmd_shard_servers(args: argparse.Namespace) -> None:
    """Where load balancers reach the shard's pools: the whole list of each, at once.

    A server whose address was listed keeps its name; every load balancer's
    route follower adds the new ones and drains and deletes the ones left
    out, without a reload (:mod:`hostd.ops.shardpools`), as for ``hostd pool
    add|remove git-S``, which change one server. ``--git``/``--hg`` left out
    empty that pool.
    """
    print(_line(_shards(args).set_servers(args.shard, git=tuple(args.git), hg=tuple(args.hg))))


def cmd_routes_sync(args: argparse.Namespace) -> None:
    """Write the route map and the shard backends from the database, load the map into HAProxy,
    and add and remove shard servers there as the database says."""
    installation = open_installation(args)
    result = routesync.sync(installation.settings, Shards(installation.database), push=not args.files_only)
    print(result.summary())


def cmd_routes_follow(args: argparse.Namespace) -> None:
    """Keep HAProxy's route map in step with the database until SIGTERM or SIGINT (the stack runs it)."""
    installation = open_installation(args)
    logsetup.configure()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    routesync.follow(installation.settings, installation.database, stop)


def cmd_routes_show(args: argparse.Namespace) -> None:
    """The route map HAProxy is using now: one repository and its shard per line."""
    for key, shard in sorted(routes.show_routes(open_installation(args).settings).items()):
        print(f"{key}\t{shard}")


def register(top: SubParsers) -> None:
    """Add ``shard`` and ``routes`` to the ``hostd`` parser."""
    group = add_group(top, "shard", "manage storage shards", "hostd shard list")
    add_command(group, "list", cmd_shard_list, "list shards", "hostd shard list")
    p = add_command(group, "add", cmd_shard_add, "register a storage shard",
                    "hostd shard add s2 --weight 2 --git 10.0.0.12:8101 --hg 10.0.0.12:8102")
    p.add_argument("shard", type=shard_name, help="the shard's name")
    p.add_argument("--weight", type=weight, default=1, help="its share of new repositories (default 1)")
    _servers(p)
    for name, func, help in (("drain", cmd_shard_drain, "place no new repositories on a shard"),
                             ("undrain", cmd_shard_undrain, "place new repositories on a shard again")):
        add_command(group, name, func, help, f"hostd shard {name} s2") \
            .add_argument("shard", type=shard_name, help="the shard")
    p = add_command(group, "weight", cmd_shard_weight, "change a shard's share of new repositories",
                    "hostd shard weight s2 3")
    p.add_argument("shard", type=shard_name, help="the shard")
    p.add_argument("weight", type=weight, help="0-1000; 0 places nothing there")
    p = add_command(group, "servers", cmd_shard_servers,
                    "set where load balancers reach a shard's pools (the whole list; hostd pool add changes one)",
                    "hostd shard servers s2 --git 10.0.0.12:8101 --hg 10.0.0.12:8102")
    p.add_argument("shard", type=shard_name, help="the shard")
    _servers(p)

    group = add_group(top, "routes", "route each repository to its shard in HAProxy", "hostd routes sync")
    p = add_command(group, "sync", cmd_routes_sync,
                    "write the route map from the database and load it into HAProxy without a reload",
                    "hostd routes sync", "hostd routes sync --files-only")
    p.add_argument("--files-only", action="store_true",
                   help="only write the files HAProxy reads at start (for a stopped stack)")
    add_command(group, "follow", cmd_routes_follow,
                "keep HAProxy's route map in step with the database, until stopped (the stack runs it)",
                "hostd routes follow")
    add_command(group, "show", cmd_routes_show, "show the route map HAProxy is using", "hostd routes show")


def _servers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--git", action="append", default=[], metavar="HOST:PORT",
                        help="a git pool server of the shard (repeat for several)")
    parser.add_argument("--hg", action="append", default=[], metavar="HOST:PORT",
                        help="an hg pool server of the shard (repeat for several)")
