"""Accounts, tokens, repositories, grants, flags and the push log: the schema of the SQLite release, in PostgreSQL.

Times are seconds since the epoch (double precision), as they were.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE users (
            name text PRIMARY KEY,
            password_hash text,
            credential_version integer NOT NULL DEFAULT 1,
            created double precision NOT NULL
        );
        CREATE TABLE tokens (
            id text PRIMARY KEY,
            username text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            secret_hash text NOT NULL,
            scope text NOT NULL CHECK (scope IN ('read', 'write')),
            expires_at double precision,
            revoked boolean NOT NULL DEFAULT false,
            created double precision NOT NULL
        );
        CREATE INDEX tokens_username ON tokens (username);
        CREATE TABLE repos (
            owner text NOT NULL REFERENCES users(name),
            name text NOT NULL,
            vcs text NOT NULL CHECK (vcs IN ('git', 'hg')),
            public boolean NOT NULL DEFAULT false,
            created double precision NOT NULL,
            PRIMARY KEY (owner, name)
        );
        CREATE TABLE grants (
            username text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            owner text NOT NULL,
            name text NOT NULL,
            level text NOT NULL CHECK (level IN ('read', 'write', 'admin')),
            PRIMARY KEY (username, owner, name),
            FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
        );
        CREATE TABLE flags (
            name text PRIMARY KEY,
            value boolean NOT NULL
        );
        CREATE TABLE pushlog (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            owner text NOT NULL,
            name text NOT NULL,
            username text NOT NULL,
            at double precision NOT NULL,
            ref text NOT NULL,
            old text NOT NULL,
            new text NOT NULL
        );
        CREATE INDEX pushlog_repo ON pushlog (owner, name, id DESC);
    """)
