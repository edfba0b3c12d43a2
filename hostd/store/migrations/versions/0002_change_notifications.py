"""Tell every process when an account, token, repository, grant or flag changes.

A statement-level trigger on each of those tables sends a notification on
the ``hostd_changes`` channel, delivered when the transaction commits, with
the table's name as payload. Each pool process listens and forgets what it
had cached (hostd/store/records.py), so a password change, a deleted user,
a revoked token or a changed grant counts in every worker at once, whoever
made the change: the CLI, another host, or someone in psql.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("users", "tokens", "repos", "grants", "flags")


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION hostd_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('hostd_changes', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$;
    """)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION hostd_notify_change()"
        )
