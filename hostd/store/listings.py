"""The repositories a home page lists: a user's own, those shared with them, and the public ones.

Three indexed reads on one connection, each at most ``limit`` rows (one
more is read, to say there are more)::

    home = Listings(db).home("alice")
    home.owned, home.shared, home.public      # Sections of Listed repositories

"Shared with you" is every repository the user has a grant on (read, write
or admin) and does not own; a public repository they have a grant on is
listed there as well as under public ones, with the level the grant gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hostd.names import normalize_name
from hostd.store.database import Connection, Database

#: Rows per section: a home page of a large installation stays one screenful of work.
LIMIT: Final = 100
_COLUMNS: Final = "r.owner, r.name, r.vcs, r.public"


@dataclass(frozen=True, slots=True)
class Listed:
    """One repository as a list shows it; ``level`` is what a grant gives (shared ones only)."""

    owner: str
    name: str
    vcs: str
    public: bool
    level: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """The first ``limit`` repositories of a list, in name order, and whether there are more."""

    repos: tuple[Listed, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class Home:
    """What the home page lists; the first two are empty for an anonymous visitor."""

    owned: Section
    shared: Section
    public: Section


class Listings:
    """Reads of ``repos`` and ``grants`` for the home page."""

    def __init__(self, db: Database, *, limit: int = LIMIT) -> None:
        self.db = db
        self.limit = limit

    def home(self, username: str | None) -> Home:
        """The three lists for ``username`` (None: anonymous)."""
        name = None if username is None else normalize_name(username)
        empty = Section((), False)
        with self.db.connection() as conn:
            public = self._section(conn, f"SELECT {_COLUMNS}, NULL AS level FROM repos AS r WHERE r.public", ())
            if name is None:
                return Home(empty, empty, public)
            owned = self._section(conn, f"SELECT {_COLUMNS}, NULL AS level FROM repos AS r WHERE r.owner = %s",
                                  (name,))
            shared = self._section(
                conn,
                f"SELECT {_COLUMNS}, g.level FROM grants AS g"
                " JOIN repos AS r ON r.owner = g.owner AND r.name = g.name"
                " WHERE g.username = %s AND r.owner <> %s",
                (name, name),
            )
        return Home(owned, shared, public)

    def _section(self, conn: Connection, sql: str, params: tuple[Any, ...]) -> Section:
        rows = conn.execute(sql + " ORDER BY r.owner, r.name LIMIT %s", (*params, self.limit + 1)).fetchall()
        listed = tuple(Listed(r["owner"], r["name"], r["vcs"], bool(r["public"]), r["level"])
                       for r in rows[:self.limit])
        return Section(listed, len(rows) > self.limit)
