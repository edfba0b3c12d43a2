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

from hostd.cli.args import SubParsers, add_command, add_group
from hostd.cli.installation import open_installation
from hostd.store.flags import DECLARED, LOCAL_TTL, SHARED_TTL, FlagStore, SharedFlags, declared
from singlemalt import SafeMemcache


def cmd_flag_set(args: argparse.Namespace) -> None:
    """Store the flag, then publish it to memcached and say how soon workers follow."""
    installation = open_installation(args)
    settings = installation.settings
    flag = declared(args.name)
    value = args.value == "on"
    secret = settings.secret_file.read_bytes()  # before the write: an unreadable secret changes nothing
    FlagStore(installation.database).set(flag, value)
    nodes = ", ".join(settings.memcached)
    shared = SharedFlags(SafeMemcache(list(settings.memcached)), secret)
    if shared.publish(flag, value):
        print(f"flag {flag.name} is {args.value}; every worker sees it within {LOCAL_TTL:g} s")
    else:
        print(f"flag {flag.name} is {args.value} in the database; memcached at {nodes} was not "
              f"updated, so workers see it within {SHARED_TTL + LOCAL_TTL:g} s")


def cmd_flag_list(args: argparse.Namespace) -> None:
    """One line per declared flag: name, value, whether it was set, what it does."""
    for state in FlagStore(open_installation(args).database).states():
        origin = "set" if state.stored else "default"
        print(f"{state.flag.name}\t{'on' if state.value else 'off'}\t{origin}\t{state.flag.description}")


def register(top: SubParsers) -> None:
    """Add the ``flag`` command group to the ``hostd`` parser."""
    flag = add_group(top, "flag", "show and set feature flags", "hostd flag list")
    p = add_command(flag, "set", cmd_flag_set, "turn a flag on or off", "hostd flag set read_only on")
    p.add_argument("name", choices=sorted(DECLARED), metavar="NAME",
                   help="the flag: " + ", ".join(sorted(DECLARED)) + " (hostd flag list says what each does)")
    p.add_argument("value", choices=("on", "off"), help="on or off")
    add_command(flag, "list", cmd_flag_list, "list every flag with its value", "hostd flag list")
