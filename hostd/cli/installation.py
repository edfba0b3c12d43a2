"""Which installation a command acts on, and opening it without creating anything.

The data directory comes from ``--data`` (anywhere on the command line, see
:func:`hostd.cli.args.data_dir`), else ``$HOSTD_DATA``, else ``var/`` in the
checkout (:meth:`hostd.settings.Settings.from_env`).

An installation *exists* when its data directory holds the server secret
(``secret``), which only ``hostd init`` (or ``make up``) writes. Every command but ``init``
goes through :func:`open_installation`, which refuses any other directory
in one line, so a mistyped ``--data`` changes nothing and creates nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from hostd.cli.args import data_dir
from hostd.cli.errors import NotInstalled
from hostd.settings import Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.storage import Storage


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings with the data directory this command line names."""
    settings = Settings.from_env()
    chosen = data_dir(args)
    return settings if chosen is None else replace(settings, data_dir=chosen)


@dataclass(frozen=True, slots=True)
class Installation:
    """An existing installation: its settings and its account database."""

    settings: Settings
    database: Database

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.database)

    @property
    def storage(self) -> Storage:
        return Storage(self.settings.repo_root)


def open_installation(args: argparse.Namespace) -> Installation:
    """The installation this command line names; :class:`NotInstalled` if there is none.

    Opens the database as it is: no schema is created and no directory made
    (``hostd init`` does that, and brings an older installation's schema up
    to date).
    """
    settings = settings_for(args)
    if not settings.secret_file.is_file():
        missing = settings.data_dir if not settings.data_dir.is_dir() else settings.secret_file
        raise NotInstalled(settings.data_dir, missing)
    database = Database(settings.database, max_size=1)
    _opened.append(database)
    return Installation(settings, database)


#: The databases this process's commands opened, closed by :func:`close_databases`.
_opened: list[Database] = []


def close_databases() -> None:
    """Close every database a command opened (``hostd.cli.main`` does, after each command line)."""
    while _opened:
        _opened.pop().close()
