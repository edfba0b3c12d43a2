"""Run a command against an "external" PostgreSQL: ``python -m tests.external_db -- COMMAND...``.

Backs ``make test-external-db`` (CI runs it after ``make test``): a
throwaway cluster in a temporary directory, on a unix socket only, with a
role that logs in by password (scram-sha-256) and may create databases,
the way an operator's own PostgreSQL would be reached. ``COMMAND`` runs
with ``HOSTD_DATABASE_URL`` naming it; the cluster is removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from hostd.ops import postgres
from hostd.settings import Settings
from tests.pg import with_database

ROLE = "hostd_external"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tests.external_db -- COMMAND...", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="hostd-external-pg-"))
    try:
        settings = Settings(data_dir=root)
        postgres.ensure_cluster(settings)
        cluster = settings.postgres_dir
        password = secrets.token_urlsafe(18)
        hba = cluster / "pg_hba.conf"
        hba.write_text(f"local all {ROLE} scram-sha-256\n" + hba.read_text())
        with postgres.temporary_server(settings):
            with psycopg.connect(with_database(settings.database, "postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)))
                # What an operator grants a monitoring role: the statement counts
                # the query benchmarks read, in the maintenance database (not in
                # hostd's: a restore or a schema comparison must not meet an
                # extension the role does not own), without making it a superuser.
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(ROLE)))
                conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO {}").format(
                    sql.Identifier(ROLE)))
            url = f"postgresql://{ROLE}:{password}@/postgres?host={cluster}"
            print(f"external PostgreSQL for this run: role {ROLE}, socket in {cluster}", flush=True)
            return subprocess.run(argv, env=dict(os.environ, HOSTD_DATABASE_URL=url), check=False).returncode
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
