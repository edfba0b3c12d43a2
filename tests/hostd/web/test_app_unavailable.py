"""The web pool while PostgreSQL is down: a page that needs the database is a 503 that says so, never a 500."""

from __future__ import annotations

from pathlib import Path

from markupsafe import escape

from hostd.store.database import Database
from hostd.web.app import UNAVAILABLE
from tests.hostd.conftest import Site
from tests.hostd.web.conftest import browse


def test_the_index_is_a_503_while_the_database_is_down(site: Site, tmp_path: Path) -> None:
    site.accounts.db = Database(f"postgresql://hostd@/hostd?host={tmp_path}", timeout=1.0)
    page = browse(site).get("/", status=503)
    assert str(escape(UNAVAILABLE)) in page.text and page.content_type == "text/html"
    assert page.headers["Retry-After"] == "5"
