"""``hostd flag set NAME on|off`` and ``hostd flag list``.

``set`` writes the account database (the truth) and then puts the value,
sealed with the server secret, into the pools' memcached, so every worker
sees it within
:data:`hostd.store.flags.LOCAL_TTL` seconds. If memcached cannot be reached the
database still changes and workers follow within ``SHARED_TTL + LOCAL_TTL``
seconds, when the old value has expired everywhere. Unknown flag names are a
usage error: flags are declared in :mod:`hostd.store.flags`, not made up here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hostd.ops.bootstrap import initialize
from hostd.settings import Settings
from hostd.store.database import Database
from hostd.store.flags import DECLARED, LOCAL_TTL, SHARED_TTL, FlagStore, SharedFlags, declared
from singlemalt import SafeMemcache

if TYPE_CHECKING:
    Command: TypeAlias = Callable[[argparse.Namespace], None]
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    #: The ``add`` helper of :func:`hostd.cli.main.build_parser`.
    AddCommand: TypeAlias = Callable[[SubParsers, str, Command, str], argparse.ArgumentParser]


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if args.data:
        settings = replace(settings, data_dir=Path(args.data).resolve())
    initialize(settings, demo=False)
    return settings


def cmd_flag_set(args: argparse.Namespace) -> None:
    """Store the flag, then publish it to memcached and say how soon workers follow."""
    settings = _settings(args)
    flag = declared(args.name)
    value = args.value == "on"
    FlagStore(Database(settings.database)).set(flag, value)
    host, port = settings.memcached_server
    shared = SharedFlags(SafeMemcache(f"{host}:{port}"), settings.secret_file.read_bytes())
    if shared.publish(flag, value):
        print(f"flag {flag.name} is {args.value}; every worker sees it within {LOCAL_TTL:g} s")
    else:
        print(f"flag {flag.name} is {args.value} in the database; memcached at {host}:{port} was not "
              f"updated, so workers see it within {SHARED_TTL + LOCAL_TTL:g} s")


def cmd_flag_list(args: argparse.Namespace) -> None:
    """One line per declared flag: name, value, whether it was set, what it does."""
    settings = _settings(args)
    for state in FlagStore(Database(settings.database)).states():
        origin = "set" if state.stored else "default"
        print(f"{state.flag.name}\t{'on' if state.value else 'off'}\t{origin}\t{state.flag.description}")


def register(top: SubParsers, add: AddCommand) -> None:
    """Add the ``flag`` command group to the ``hostd`` parser."""
    flag = top.add_parser("flag", help="show and set feature flags").add_subparsers(dest="action", required=True)
    p = add(flag, "set", cmd_flag_set, "turn a flag on or off")
    p.add_argument("name", choices=sorted(DECLARED), metavar="NAME", help=", ".join(sorted(DECLARED)))
    p.add_argument("value", choices=("on", "off"))
    add(flag, "list", cmd_flag_list, "list every flag with its value")
