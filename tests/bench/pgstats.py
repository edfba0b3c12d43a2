"""Statements PostgreSQL ran, counted with ``pg_stat_statements``: how many queries a request costs.

Issue 17 moves hostd's records to PostgreSQL and aims at no query at all on
a warm request.  The count comes from the server, not from hostd's code, so
it covers every statement whatever layer issued it (the credential store,
the policy, the push log, the flags, a cache that falls through)::

    stats = StatementStats(settings.database)
    stats.prepare()            # None, or why it cannot count
    stats.reset()
    ...                        # the operation
    statements = stats.read()  # what ran since the reset, in this database

``pg_stat_statements`` must be in ``shared_preload_libraries`` (the stack's
own cluster has it, :mod:`hostd.ops.postgres`).  The counts are read and
reset in the server's maintenance database, ``postgres`` (they cover every
database; the one measured is picked by name), so hostd's own database never
holds the extension.  Creating it and resetting the counts needs the
superuser, which the hostd role is in the stack's cluster; on another server
an administrator creates it there and grants the role ``pg_read_all_stats``
and ``EXECUTE`` on ``pg_stat_statements_reset`` (as ``tests.external_db``
does).  Without that, :meth:`StatementStats.prepare` says why it cannot count,
and the benchmarks report that instead of a number.

The benchmark's own statements (they all name ``pg_stat_statements``) are
left out.  Statements that run whether or not anyone makes a request (the
pools' health checks, ``SELECT 1``; ``LISTEN`` and ``UNLISTEN`` of a
change listener) are kept apart as *background*: they are listed, not
counted against a request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: Where the counts are read: every PostgreSQL server has this database.
MAINTENANCE_DATABASE = "postgres"
#: Text every statement of the benchmark's own contains.
OWN = "pg_stat_statements"
#: Statements that run on a timer or once per connection, not per request (normalized text).
_BACKGROUND = re.compile(r"\s*(SELECT\s+(1|\$1)\s*;?|(UN)?LISTEN\b.*|NOTIFY\b.*)\s*", re.IGNORECASE | re.DOTALL)
#: Kinds of statement, as :func:`kind` names them.
OWN_KIND, BACKGROUND, REQUEST = "own", "background", "request"


def kind(query: str) -> str:
    """Whether a (normalized) statement is the benchmark's own, background work, or a request's."""
    if OWN in query.lower():
        return OWN_KIND
    if _BACKGROUND.fullmatch(query):
        return BACKGROUND
    return REQUEST


@dataclass(frozen=True, slots=True)
class Statement:
    """One normalized statement and how often it ran."""

    query: str
    calls: int

    @property
    def kind(self) -> str:
        return kind(self.query)

    def short(self, width: int = 90) -> str:
        """The statement on one line, cut to ``width`` characters."""
        text = " ".join(self.query.split())
        return text if len(text) <= width else text[: width - 1] + "…"


def of_kind(statements: Iterable[Statement], wanted: str) -> list[Statement]:
    """The statements of one kind, most called first."""
    return sorted((s for s in statements if s.kind == wanted), key=lambda s: (-s.calls, s.query))


def calls(statements: Iterable[Statement], wanted: str = REQUEST) -> int:
    """How many statements of one kind ran in all."""
    return sum(s.calls for s in statements if s.kind == wanted)


def describe(statements: Sequence[Statement], wanted: str = REQUEST, *, width: int = 90) -> str:
    """``3× SELECT …; 1× INSERT …`` for one table cell; ``none`` when nothing of that kind ran."""
    chosen = of_kind(statements, wanted)
    return "; ".join(f"{s.calls}× `{s.short(width)}`" for s in chosen) or "none"


class StatementStats:
    """``pg_stat_statements`` of one database, read and reset over short connections of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = conninfo_to_dict(url).get("dbname")
        self._stats_url = make_conninfo(url, dbname=MAINTENANCE_DATABASE)

    def prepare(self) -> str | None:
        """Create the extension if needed and check it counts; None when it does, else why not."""
        try:
            with psycopg.connect(self._stats_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT count(*) FROM pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error as error:
            return f"pg_stat_statements unavailable: {str(error).strip().splitlines()[0]}"
        return None

    def reset(self) -> None:
        """Forget every count (of every database of the server: it only resets all at once here)."""
        with psycopg.connect(self._stats_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")

    def read(self) -> list[Statement]:
        """Every statement run in this database since the last reset, the benchmark's own left out."""
        with psycopg.connect(self._stats_url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT query, sum(calls)::bigint FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)"
                " GROUP BY query", (self.database,)).fetchall()
        return [Statement(str(query), int(count)) for query, count in rows
                if count and kind(str(query)) != OWN_KIND]
