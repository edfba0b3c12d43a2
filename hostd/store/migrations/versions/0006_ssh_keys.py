"""SSH public keys: a user's own keys, and deploy keys of one repository.

sshd asks ``AuthorizedKeysCommand`` for the keys of a login by the
fingerprint of the key offered (``%f``): ``fingerprint`` is OpenSSH's
SHA256 form (``SHA256:`` and the unpadded base64 of the key's SHA-256),
unique, and its index is the lookup (:meth:`hostd.store.keys.Keys.lookup`).
A key is unique across the whole table: one key is one user's, or one
repository's deploy key, never both, so a fingerprint names one grant.

A key belongs to exactly one of a user (``username``: their key, with
their access) or a repository (``repo_owner``, ``repo_name``: a deploy key,
read-only unless ``can_write``; a user key never has ``can_write``). Users
and repositories are keyed by name (``users.name``, ``repos (owner,
name)``), so these reference them by name, as ``tokens`` and ``grants``
do; deleting the user or the repository deletes its keys.

No change notification (migration 0002): nothing caches keys. sshd reads
them anew at each login, and a pool told of a table it does not know
forgets everything it cached (hostd/store/records.py).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE ssh_keys (
            id bigserial PRIMARY KEY,
            username text REFERENCES users(name) ON DELETE CASCADE,
            repo_owner text,
            repo_name text,
            can_write boolean NOT NULL DEFAULT false,
            title text NOT NULL DEFAULT '',
            kind text NOT NULL,
            blob text NOT NULL,
            fingerprint text NOT NULL,
            bits integer NOT NULL,
            created timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ssh_keys_fingerprint UNIQUE (fingerprint),
            CONSTRAINT ssh_keys_repo FOREIGN KEY (repo_owner, repo_name)
                REFERENCES repos(owner, name) ON DELETE CASCADE,
            CONSTRAINT ssh_keys_one_holder CHECK (
                (username IS NOT NULL AND repo_owner IS NULL AND repo_name IS NULL)
                OR (username IS NULL AND repo_owner IS NOT NULL AND repo_name IS NOT NULL)),
            CONSTRAINT ssh_keys_write_is_deploy CHECK (username IS NULL OR NOT can_write)
        );
        CREATE INDEX ssh_keys_username ON ssh_keys (username);
        CREATE INDEX ssh_keys_repo ON ssh_keys (repo_owner, repo_name);
    """)
