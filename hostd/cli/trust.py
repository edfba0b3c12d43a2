"""``hostd trust [--install | --remove]``: what git, hg and curl need to trust this stack's certificate.

Alone, it prints what is needed and how :mod:`hostd.ops.trust` would do it (or
that nothing is); ``--install`` does it (as root: the system trust store, so
every user and client; otherwise this user's git and hg, for this server), and
``--remove`` takes out what it put in. Both may be run twice. The stack need not
be running: only the data directory's certificates are read.

    hostd trust
    hostd trust --install
"""

from __future__ import annotations

import argparse

from hostd.cli.args import SubParsers, add_command
from hostd.cli.errors import CommandError, NotInstalled
from hostd.cli.installation import settings_for
from hostd.ops import trust


def cmd_trust(args: argparse.Namespace) -> None:
    """Print, install or remove what clients need to trust the installation's certificate."""
    settings = settings_for(args)
    # The database is not needed (nor, perhaps, running): an installation is its secret.
    if not settings.secret_file.is_file():
        missing = settings.data_dir if not settings.data_dir.is_dir() else settings.secret_file
        raise NotInstalled(settings.data_dir, missing)
    places = trust.Places.default()
    found = trust.facts(settings, places)
    decided = trust.plan(settings, found, places)
    try:
        if args.remove:
            _remove(decided, found, places)
        elif args.install:
            if decided.refusal is not None:
                raise CommandError(decided.refusal)
            if not decided.install:
                print(decided.says[0])
                return
            trust.apply(decided.install, places)
            print(decided.done)
        else:
            print("\n".join(decided.says))
    except trust.TrustError as error:
        raise CommandError(str(error)) from None


def _remove(decided: trust.Plan, found: trust.Facts, places: trust.Places) -> None:
    trust.apply(decided.remove, places)
    if found.system_traces and not found.root:
        raise CommandError(f"this stack's CA is in the system trust store ({places.system_certs}); "
                           "run hostd trust --remove as root to take it out")
    print("Removed: " + "; ".join(action.lines()[0] for action in decided.remove) if decided.remove
          else "Nothing of this stack's to remove.")


def register(top: SubParsers) -> None:
    """Add the ``trust`` command to the ``hostd`` parser."""
    p = add_command(top, "trust", cmd_trust,
                    "print, install or remove what git, hg and curl need to trust this stack's certificate",
                    "hostd trust", "hostd trust --install", "hostd trust --remove")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--install", action="store_true",
                      help="do it: as root, the system trust store; otherwise this user's git and hg")
    what.add_argument("--remove", action="store_true", help="take out what --install put in")
