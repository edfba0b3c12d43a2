"""``hostd init``: the one command that creates an installation.

It is also how an existing installation is brought up to date: every step of
:func:`hostd.ops.bootstrap.initialize` keeps what is there and adds what is
missing (a newer schema's tables, a deleted secret or certificate).
"""

from __future__ import annotations

import argparse

from hostd.cli.args import SubParsers, add_command
from hostd.cli.installation import settings_for
from hostd.ops.bootstrap import initialize


def cmd_init(args: argparse.Namespace) -> None:
    """Create (or complete) the data directory; print the demo account if one was made."""
    settings = settings_for(args)
    demo = initialize(settings, demo=not args.no_demo)
    print(f"data directory ready: {settings.data_dir}")
    if demo is not None:
        print(f"demo user: {demo.username}  password: {demo.password}  (stored in "
              f"{settings.data_dir / 'demo-password'})")


def register(top: SubParsers) -> None:
    """Add ``init`` to the ``hostd`` parser."""
    p = add_command(top, "init", cmd_init, "create the data directory, or complete an existing one",
                    "hostd init --data /srv/hostd", "hostd init --no-demo --data /srv/hostd")
    p.add_argument("--no-demo", action="store_true",
                   help="no demo user and demo repositories (made only with a new database anyway)")
