"""Alembic's environment for hostd: online migrations over the URL hostd/store/schema.py sets."""

from __future__ import annotations

import sqlalchemy
from alembic import context

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
