"""Storage shards: which host holds each repository.

A shard is a storage host (or a set of pool hosts sharing one repository
directory). Each repository lives on exactly one; the load balancers route
its traffic there (haproxy/haproxy.cfg, ``hostd routes sync``) and the pools
of every other shard refuse it (hostd/guard/shard.py). New repositories are
placed by weight among the shards that are not draining
(:meth:`hostd.store.accounts.Accounts.add_repo`).

Every repository that exists already is on the shard ``default``, the only
one a single-host installation has; the column's default keeps it so for
the import of a SQLite release (hostd/store/legacy.py), which predates shards.

``git_servers`` and ``hg_servers`` are the addresses a load balancer reaches
the shard's pools at (``host:port``), rendered into its backends; empty for
the shard a load balancer serves through its home backends.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE shards (
            name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,31}$'),
            weight integer NOT NULL DEFAULT 1 CHECK (weight >= 0),
            draining boolean NOT NULL DEFAULT false,
            git_servers text[] NOT NULL DEFAULT '{}',
            hg_servers text[] NOT NULL DEFAULT '{}',
            created double precision NOT NULL
        );
        INSERT INTO shards (name, created) VALUES ('default', extract(epoch FROM now()));
        ALTER TABLE repos ADD COLUMN shard text NOT NULL DEFAULT 'default' REFERENCES shards(name);
        CREATE INDEX repos_shard ON repos (shard);
        CREATE TRIGGER shards_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON shards
            FOR EACH STATEMENT EXECUTE FUNCTION hostd_notify_change();
    """)
