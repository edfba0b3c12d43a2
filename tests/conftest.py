"""Session-wide set-up: which PostgreSQL the tests use (see tests/pg.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hostd.store.database import Database
from tests import pg


def pytest_configure(config: pytest.Config) -> None:
    del config
    pg.EXTERNAL = os.environ.pop("HOSTD_DATABASE_URL", None) or None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    del session, exitstatus
    pg.close()


@pytest.fixture
def database_url() -> str:
    """A new database at the newest schema, for this test alone."""
    return pg.new_database()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A :class:`Database` on this test's own database, closed after it."""
    db = Database(database_url)
    yield db
    db.close()
