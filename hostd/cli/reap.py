"""``hostd reap [--grace S] [--dry-run]``: stop gunicorn workers whose master died.

See :mod:`hostd.ops.reap` for how an orphaned worker is recognized. One line per
process and what was done to it; exit status 1 if one outlived SIGKILL.

    hostd reap --dry-run
    hostd reap --grace 10
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hostd.ops import reap
from hostd.settings import Settings

if TYPE_CHECKING:
    Command: TypeAlias = Callable[[argparse.Namespace], None]
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    #: The ``add`` helper of :func:`hostd.cli.main.build_parser`.
    AddCommand: TypeAlias = Callable[[SubParsers, str, Command, str], argparse.ArgumentParser]


def cmd_reap(args: argparse.Namespace) -> None:
    """TERM the installation's orphaned workers, KILL what is left after the grace period."""
    settings = Settings.from_env()
    if args.data:
        settings = replace(settings, data_dir=Path(args.data).resolve())
    outcomes = reap.reap(settings.data_dir, grace=args.grace, dry_run=args.dry_run)
    if not outcomes:
        print(f"no orphaned workers of {settings.data_dir}")
    for outcome in outcomes:
        print(outcome.line)
    if any(not o.stopped for o in outcomes) and not args.dry_run:
        raise SystemExit(1)


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def register(top: SubParsers, add: AddCommand) -> None:
    """Add the ``reap`` command to the ``hostd`` parser."""
    p = add(top, "reap", cmd_reap, "stop gunicorn workers whose master has died (TERM, then KILL)")
    p.add_argument("--grace", type=_grace, default=10.0,
                   help="seconds between TERM and KILL (default 10)")
    p.add_argument("--dry-run", action="store_true", help="only list the orphaned workers")
