"""Counting queries per request (issue 17): the statement classes, the counts on a real PostgreSQL, the report.

No timing is asserted; ``make bench`` runs the scenario against a whole stack.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.bench import pgstats
from tests.bench.queries import HEADING, TARGET, Measured, section, verdict
from tests.bench.report import Results, render
from tests.bench.singlemalt_postgres import difference

USERS = pgstats.Statement("SELECT name, password_hash, credential_version FROM users WHERE name = $1", 3)
REPOS = pgstats.Statement("SELECT owner, name, vcs, public FROM repos WHERE owner = $1 AND name = $2", 4)
HEALTH = pgstats.Statement("SELECT $1", 2)


@pytest.mark.parametrize(("query", "kind"), [
    ("SELECT $1", pgstats.BACKGROUND),
    ("select 1", pgstats.BACKGROUND),
    ("LISTEN hostd_changes", pgstats.BACKGROUND),
    ("UNLISTEN *", pgstats.BACKGROUND),
    ("NOTIFY hostd_changes", pgstats.BACKGROUND),
    ("SELECT pg_stat_statements_reset()", pgstats.OWN_KIND),
    ("SELECT query, calls FROM pg_stat_statements", pgstats.OWN_KIND),
    ("SELECT $1 FROM users WHERE name = $2", pgstats.REQUEST),
    ("SELECT level FROM grants WHERE username = $1", pgstats.REQUEST),
    ("INSERT INTO pushlog (owner) VALUES ($1)", pgstats.REQUEST),
    ("BEGIN", pgstats.REQUEST),
    ("SELECT pg_notify($1, $2)", pgstats.REQUEST),
], ids=["health", "health-literal", "listen", "unlisten", "notify", "reset", "read", "select-constant-column",
        "grant", "insert", "begin", "pg-notify"])
def test_statement_kinds(query: str, kind: str) -> None:
    assert pgstats.kind(query) == kind


def test_counts_what_ran_in_its_database(database_url: str) -> None:
    stats = pgstats.StatementStats(database_url)
    assert stats.prepare() is None
    stats.reset()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in ("alice", "bob", "carol"):
            conn.execute("SELECT name FROM users WHERE name = %s", (name,))
        conn.execute("SELECT 1")
        conn.execute("LISTEN hostd_changes")
    statements = stats.read()
    assert pgstats.calls(statements) == 3
    assert pgstats.calls(statements, pgstats.BACKGROUND) == 2
    assert pgstats.describe(statements) == "3× `SELECT name FROM users WHERE name = $1`"
    assert not any(statement.kind == pgstats.OWN_KIND for statement in statements)


def test_prepare_says_why_it_cannot_count() -> None:
    problem = pgstats.StatementStats("postgresql://nobody@/nothing?host=/nonexistent").prepare()
    assert problem is not None and problem.startswith("pg_stat_statements unavailable")


def test_difference_counts_calls_between_readings() -> None:
    before = [pgstats.Statement(USERS.query, 1)]
    assert difference([USERS, REPOS], before) == [pgstats.Statement(USERS.query, 2), REPOS]
    assert difference([USERS], [USERS]) == []


def test_queries_per_request_and_verdict() -> None:
    clone = Measured("git clone", 4, (USERS, REPOS, HEALTH))
    warm = Measured("git fetch", 3, (HEALTH,))
    assert clone.queries == 7 and clone.per_request == pytest.approx(1.75)
    assert Measured("nothing", 0, ()).per_request is None
    assert verdict([warm]) == "met (worst: git fetch, 0 queries in 3 requests)"
    assert verdict([warm, clone]) == "NOT met (worst: git clone, 7 queries in 4 requests)"
    assert verdict([Measured("nothing", 0, ())]).startswith("not measured")


def test_section_and_verdict_reach_the_report() -> None:
    results = Results()
    measured = [Measured("git clone", 4, (USERS, REPOS, HEALTH))]
    results.sections.append(section(measured))
    results.verdicts.append([TARGET, "—", "—", verdict(measured)])
    text = render(results, [], title="T", preamble=["how"])
    assert f"## {HEADING}" in text
    assert "| git clone | 4 | 7 | 1.75 | 4× `SELECT owner" in text
    assert "2× `SELECT $1`" in text  # background: listed, not counted
    assert text.index(HEADING) < text.index("## Targets")
    assert f"| {TARGET} | — | — | NOT met (worst: git clone, 7 queries in 4 requests) |" in text
