"""The web pool while PostgreSQL is down: a page that needs the database is a 503 that says so, never a 500."""

from __future__ import annotations

from pathlib import Path

import webtest

from hostd.store.database import Database
from hostd.web.app import UNAVAILABLE, WebApp
from tests.hostd.conftest import Site


def test_the_index_is_a_503_while_the_database_is_down(site: Site, tmp_path: Path) -> None:
    site.accounts.db = Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)
    app = webtest.TestApp(site.decided(WebApp(site.accounts, site.storage, "https://example.test"), None),
                          lint=True)
    page = app.get("/", status=503)
    assert page.text == UNAVAILABLE + "\n"
    assert page.headers["Retry-After"] == "5"
