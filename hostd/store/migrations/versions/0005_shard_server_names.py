"""The names of a shard's servers, kept beside their addresses.

``git_names[i]`` is the HAProxy server name of ``git_servers[i]`` (the same
for hg). Every load balancer renders the shard's backends with these names
(``shards.cfg``) and adds and deletes the same servers at run time
(``hostd pool add git-s2 NAME IP:PORT``, ``hostd routes follow``), so a
server keeps its name when another one is added or removed before it, and
a reload and the run-time path agree on what each server is called. A
server is known by its name: ``git1``, ``git2``... for the ones that exist
already, which is what they were called when the name was their position.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE shards ADD COLUMN git_names text[] NOT NULL DEFAULT '{}',
                           ADD COLUMN hg_names text[] NOT NULL DEFAULT '{}';
        UPDATE shards SET
            git_names = ARRAY(SELECT 'git' || n FROM generate_series(1, cardinality(git_servers)) AS n),
            hg_names = ARRAY(SELECT 'hg' || n FROM generate_series(1, cardinality(hg_servers)) AS n);
        ALTER TABLE shards
            ADD CONSTRAINT shards_git_names CHECK (cardinality(git_names) = cardinality(git_servers)),
            ADD CONSTRAINT shards_hg_names CHECK (cardinality(hg_names) = cardinality(hg_servers));
    """)
