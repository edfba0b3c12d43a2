"""``hostd reap [--grace S] [--dry-run]``: stop gunicorn workers whose master died.

See :mod:`hostd.ops.reap` for how an orphaned worker is recognized. One line per
process and what was done to it; exit status 1 if one outlived SIGKILL.

    hostd reap --dry-run
    hostd reap --grace 10
"""

from __future__ import annotations

import argparse

from hostd.cli.args import SubParsers, add_command
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.ops import reap


def cmd_reap(args: argparse.Namespace) -> None:
    """TERM the installation's orphaned workers, KILL what is left after the grace period."""
    data_dir = open_installation(args).settings.data_dir
    outcomes = reap.reap(data_dir, grace=args.grace, dry_run=args.dry_run)
    if not outcomes:
        print(f"no orphaned workers of {data_dir}")
    for outcome in outcomes:
        print(outcome.line)
    survivors = [o for o in outcomes if not o.stopped]
    if survivors and not args.dry_run:
        raise CommandError(f"{len(survivors)} worker(s) outlived SIGKILL (see above)")


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def register(top: SubParsers) -> None:
    """Add the ``reap`` command to the ``hostd`` parser."""
    p = add_command(top, "reap", cmd_reap, "stop gunicorn workers whose master has died (TERM, then KILL)",
                    "hostd reap --dry-run", "hostd reap --grace 10")
    p.add_argument("--grace", type=_grace, default=10.0, metavar="SECONDS",
                   help="seconds between TERM and KILL, 0 to 3600 (default 10)")
    p.add_argument("--dry-run", action="store_true", help="only list the orphaned workers")
