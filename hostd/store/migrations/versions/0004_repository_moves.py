"""A repository being moved to another shard: its short read-only window.

``repos.moving_to`` names the shard a repository is being moved to while
``hostd repo move`` syncs its last changes and flips its row
(hostd/ops/move.py); pushes to it are refused meanwhile, with a message that
says why and to try again in a moment (hostd/guard/policy.py). NULL the
rest of the time.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE repos ADD COLUMN moving_to text REFERENCES shards(name)")
