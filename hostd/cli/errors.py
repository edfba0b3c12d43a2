"""The errors a ``hostd`` command raises on purpose.

Each is printed by :func:`hostd.cli.main.main` as one ``hostd: <message>``
line, with the exit status its row of :data:`hostd.cli.main.EXIT_CODES` gives.
The store and operations layers raise their own errors (``AccountError``,
``PoolError``...); these are for what only the command line knows.
"""

from __future__ import annotations

from pathlib import Path


class CommandError(Exception):
    """A command that cannot be carried out; the message is printed as is."""


class UsageError(Exception):
    """The command line itself is wrong (exit status 2, like argparse's own).

    ``usage`` is the usage line of the (sub)command that was being parsed, so
    the operator sees what that command takes right above the reason.
    """

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class NotInstalled(CommandError):
    """The data directory is not a hostd installation.

    Only ``hostd init`` creates one: any other command given a mistyped
    ``--data`` must stop here rather than create a second installation (a
    database, a secret, a CA key) that the operator then changes by mistake.
    """

    def __init__(self, data_dir: Path, missing: Path) -> None:
        super().__init__(
            f"no hostd installation at {data_dir} ({missing} does not exist); "
            f"create one with: hostd init --data {data_dir}"
        )
        self.data_dir = data_dir
