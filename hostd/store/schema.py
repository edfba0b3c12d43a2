"""The database schema, changed only by migrations (Alembic).

The migrations are in ``hostd/store/migrations/versions``, one file per
change, each with an ``upgrade`` written in PostgreSQL's own SQL. Alembic
records the revision a database is at in its ``alembic_version`` table;
:func:`upgrade` brings a database to the newest revision (``hostd db
upgrade``, run by ``make up``), :func:`current` says where it is (``hostd db
current``). Nothing creates tables any other way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlalchemy_url(url: str) -> str:
    """The libpq URL as SQLAlchemy's psycopg 3 dialect spells it."""
    scheme, rest = url.split("://", 1)
    del scheme
    return "postgresql+psycopg://" + rest


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision there is."""
    revision = ScriptDirectory.from_config(_config("postgresql://")).get_current_head()
    assert revision is not None
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration the database lacks, up to ``revision``, in one transaction each."""
    # Alembic logs each step at INFO through its own logger: keep that, but
    # never let it reconfigure the process's logging (no fileConfig here).
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at; None before the first migration."""
    engine = sqlalchemy.create_engine(_sqlalchemy_url(url), poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
