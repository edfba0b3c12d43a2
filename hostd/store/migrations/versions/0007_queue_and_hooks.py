"""The durable queue (procrastinate's schema) and webhooks.

**The queue** is procrastinate's, on this database: its tables, types and
functions exactly as procrastinate 3.10.0 (pinned in ``pyproject.toml``)
ships them in ``procrastinate/sql/schema.sql``. They are applied here, by
our migrations, so that one ``hostd db upgrade`` brings everything to date;
a later procrastinate version's own migration files become later revisions
of ours (``tests/test_pins.py`` fails when the installed version is not the
one this schema came from). A push's event is a job inserted in the same
transaction as the push's ``pushlog`` rows (hostd/store/queue.py).

**Webhooks.** ``hooks``: a repository's receivers (``secret`` is the HMAC
key of ``X-Hostd-Signature-256``, never shown back; ``failures`` counts
consecutive failed attempts, and a hook past the limit is disabled with a
``disabled_reason`` until its owner enables it again). ``hook_deliveries``:
one per (event, hook), its id the ``X-Hostd-Delivery`` UUID and its body
built once, so that every retry sends the same bytes under the same id.
``hook_attempts``: each try, as ``hostd hook deliveries`` lists them.

**Upkeep.** ``repo_upkeep`` counts a repository's pushes since its last
background maintenance (hostd/work/tasks.py).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from procrastinate.schema import SchemaManager

    # Through the driver, not SQLAlchemy's text(): the schema's PL/pgSQL has
    # "%" placeholders of its own and "::" casts, neither of them ours to parse.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    driver.execute(SchemaManager.get_schema())
    op.execute("""
        CREATE TABLE hooks (
            id bigserial PRIMARY KEY,
            repo_owner text NOT NULL,
            repo_name text NOT NULL,
            url text NOT NULL,
            secret text NOT NULL DEFAULT '',
            events text[] NOT NULL DEFAULT '{push}',
            active boolean NOT NULL DEFAULT true,
            failures integer NOT NULL DEFAULT 0,
            disabled_reason text,
            created timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT hooks_repo FOREIGN KEY (repo_owner, repo_name)
                REFERENCES repos(owner, name) ON DELETE CASCADE
        );
        CREATE INDEX hooks_repo_index ON hooks (repo_owner, repo_name);
        CREATE TABLE hook_deliveries (
            id uuid PRIMARY KEY,
            hook_id bigint NOT NULL REFERENCES hooks(id) ON DELETE CASCADE,
            event text NOT NULL,
            body bytea NOT NULL,
            created timestamptz NOT NULL DEFAULT now(),
            state text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
            attempts integer NOT NULL DEFAULT 0
        );
        CREATE INDEX hook_deliveries_hook ON hook_deliveries (hook_id, created DESC);
        CREATE TABLE hook_attempts (
            id bigserial PRIMARY KEY,
            delivery_id uuid NOT NULL REFERENCES hook_deliveries(id) ON DELETE CASCADE,
            at timestamptz NOT NULL DEFAULT now(),
            duration double precision NOT NULL,
            status integer,
            error text
        );
        CREATE INDEX hook_attempts_delivery ON hook_attempts (delivery_id, id);
        CREATE TABLE repo_upkeep (
            owner text NOT NULL,
            name text NOT NULL,
            pushes integer NOT NULL DEFAULT 0,
            maintained timestamptz,
            PRIMARY KEY (owner, name),
            FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
        );
    """)
