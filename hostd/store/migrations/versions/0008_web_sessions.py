"""Web sessions (signing in with the web form), and a label on each access token.

``web_sessions``: one row per signed-in browser. The cookie holds a random
256-bit token; the table holds only its SHA-256 (``token_hash``), so a copy
of the table (a backup, a replica, someone in psql) signs nobody in.
``password_stamp`` is the SHA-256 of the user's password hash when the
session began: a new password (or none: sign-in disabled) ends every
session made with the old one, and so does a user deleted and re-created
under the same name (a new salt), without a column the CLI must remember to
bump. ``expires`` is the absolute end; the idle limit is counted from
``last_seen`` (hostd/store/sessions.py has both lifetimes and why).

No change notification (migration 0002): nothing caches sessions; each
page's lookup is one indexed query.

``tokens.label``: what the owner called a token when they made it (the
web's token page lists it; the CLI's tokens have none).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE web_sessions (
            token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
            username text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            password_stamp bytea NOT NULL,
            created timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now(),
            expires timestamptz NOT NULL
        );
        CREATE INDEX web_sessions_username ON web_sessions (username);
        CREATE INDEX web_sessions_expires ON web_sessions (expires);
        ALTER TABLE tokens ADD COLUMN label text NOT NULL DEFAULT ''
            CHECK (char_length(label) <= 100);
    """)
