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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from hostd.store.database import DatabaseUnavailable

# Alembic and SQLAlchemy are imported where they are used, not here: every
# ``hostd`` command imports this module (through the stack and ``hostd db``),
# and they would add a third of a second to the start of each, for the few
# commands that touch the schema.
if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlalchemy_url(url: str) -> str:
    """The libpq URL as SQLAlchemy's psycopg 3 dialect spells it."""
    scheme, rest = url.split("://", 1)
    del scheme
    return "postgresql+psycopg://" + rest


def _config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision there is."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config("postgresql://")).get_current_head()
    assert revision is not None
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration the database lacks, up to ``revision``, in one transaction each."""
    # Alembic logs each step at INFO through its own logger: keep that, but
    # never let it reconfigure the process's logging (no fileConfig here).
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _psycopg_errors():
        command.upgrade(_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at; None before the first migration."""
    import sqlalchemy
    from alembic.runtime.migration import MigrationContext

    engine = sqlalchemy.create_engine(_sqlalchemy_url(url), poolclass=sqlalchemy.NullPool)
    try:
        with _psycopg_errors(), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def _psycopg_errors() -> Iterator[None]:
    """What psycopg raised, not SQLAlchemy's wrapping of it: callers handle database errors one way."""
    import sqlalchemy.exc

    try:
        yield
    except sqlalchemy.exc.DBAPIError as error:
        cause = error.orig
        if isinstance(cause, psycopg.OperationalError) and cause.sqlstate is None:
            text = str(cause).strip().splitlines()
            raise DatabaseUnavailable(text[0] if text else "connection failed") from error
        if isinstance(cause, psycopg.Error):
            raise cause from error
        raise
