"""``hostd``: the admin command line (``python -m hostd.cli`` is the same).

Every command acts on one installation, the data directory given by
``--data DIR`` (before or after the command), else ``$HOSTD_DATA``, else
``var/`` in the checkout. Only ``hostd init`` creates an installation; every
other command refuses a directory without one, in one line, and creates
nothing (:mod:`hostd.cli.installation`).

Errors print one line, ``hostd: <message>``, on stderr; the exit status is
the row of :data:`EXIT_CODES` the error matches: 1 when a command could not
be carried out, 2 for a wrong command line (with that command's usage above
the reason), 130 when interrupted. ``hostd`` alone prints this help on stdout
and exits 2, a usage error: like git, which prints its usage when given no
command, but with the status argparse gives every other usage error.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from hostd.cli import accounts, db, flags, hooks, init, keys, pool, reap, repos, shards, trust
from hostd.cli.args import HostdParser, new_parser
from hostd.cli.errors import CommandError, NotInstalled, UsageError
from hostd.cli.installation import close_databases
from hostd.ops.haproxy import StackError
from hostd.settings import SettingsError
from hostd.store.accounts import AccountError
from hostd.store.database import DatabaseUnavailable
from hostd.store.flags import FlagError
from hostd.store.legacy import LegacyImportError
from hostd.store.storage import StorageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One row of the table: errors of ``kind`` exit with ``code``.

    ``label`` prefixes messages that do not say where they come from
    (psycopg's "connection refused"), or stands for an empty one.
    """

    kind: type[BaseException]
    code: int
    label: str = ""


#: Searched in order, first match wins; anything else is a bug and keeps its traceback.
EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(UsageError, EXIT_USAGE),
    ExitCode(NotInstalled, EXIT_FAILED),
    ExitCode(CommandError, EXIT_FAILED),
    ExitCode(AccountError, EXIT_FAILED),
    ExitCode(StorageError, EXIT_FAILED),
    ExitCode(FlagError, EXIT_FAILED),
    ExitCode(StackError, EXIT_FAILED),  # and PoolError: HAProxy refused, or is not running
    ExitCode(SettingsError, EXIT_FAILED),  # a HOSTD_* variable hostd cannot use
    ExitCode(LegacyImportError, EXIT_FAILED),  # hostd init: the SQLite file of an older release
    ExitCode(DatabaseUnavailable, EXIT_FAILED, "database unreachable"),
    ExitCode(psycopg.Error, EXIT_FAILED, "database"),
    ExitCode(OSError, EXIT_FAILED),
    ExitCode(KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted"),
)

DESCRIPTION = """\
The admin command line of a hostd installation: users, repositories, tokens,
SSH keys, webhooks and the queue, feature flags and the worker pools.

Every command acts on the data directory given by --data (before or after the
command), else $HOSTD_DATA, else var/ in the checkout. Only init creates one.

Exit status: 0 done, 1 the command failed (one line on stderr says why),
2 a wrong command line (and hostd alone, which prints this help), 130 interrupted."""

EXAMPLES = (
    "hostd init --data /srv/hostd",
    "hostd --data /srv/hostd repo list",
    "hostd repo create alice/notes --vcs hg --data /srv/hostd",
    "hostd COMMAND --help",
)


def version() -> str:
    """The installed package's version, as ``pip`` knows it."""
    try:
        return importlib.metadata.version("hostd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> HostdParser:
    """The whole ``hostd`` command line; each module adds its commands."""
    parser = new_parser("hostd", DESCRIPTION, EXAMPLES)
    parser.add_argument("--version", action="version", version=f"hostd {version()}",
                        help="print hostd's version and exit")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands",
                                help="what to do (hostd COMMAND --help for each)")
    for module in (init, accounts, keys, repos, hooks, shards, flags, db, pool, reap, trust):
        module.register(top)
    return parser


def exit_code(error: BaseException) -> ExitCode | None:
    """The row of :data:`EXIT_CODES` for ``error``; None for an unexpected one."""
    return next((row for row in EXIT_CODES if isinstance(error, row.kind)), None)


def report(error: BaseException, row: ExitCode) -> None:
    """The one place a command's error is printed: ``hostd: <message>`` on stderr."""
    if isinstance(error, UsageError):
        sys.stderr.write(error.usage)
    text = str(error)
    if row.label:
        text = f"{row.label}: {text}" if text else row.label
    print(f"hostd: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; returns the exit status (the console script exits with it)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not arguments:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _run(parser, arguments)
    except BaseException as error:
        row = exit_code(error)
        if row is None:
            raise
        report(error, row)
        return row.code


def _run(parser: HostdParser, arguments: list[str]) -> int:
    try:
        args = parser.parse_args(arguments)
    except SystemExit as done:  # --help or --version: printed, nothing to run
        return done.code if isinstance(done.code, int) else EXIT_OK
    try:
        args.func(args)
    finally:
        close_databases()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
