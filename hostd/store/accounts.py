"""Users, access tokens, repositories and grants in the account database.

:class:`Accounts` is both the admin API the CLI calls and the
:class:`singlemalt.CredentialStore` the pools verify against. Every change to
a user's credentials (password, token revoked) bumps that user's
``credential_version``, which is part of every verification cache key, so the
change takes effect on the next request in every worker. The cache key also
binds the stored hash (random salt), so a user deleted and re-created under
the same name never gets a cached login of the old account back; the old
account's tokens and grants are deleted with it, and a token older than its
owner's account is never accepted.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass

from hostd.names import RepoName, normalize_name
from hostd.store.database import Database
from singlemalt import IssuedToken, Scope, TokenRecord, UserRecord, canonical_name, hash_password, new_token


class AccountError(Exception):
    """An admin operation that cannot be done; the message is shown as is."""


class Level(enum.IntEnum):
    """Access levels, ordered so that a higher level includes the lower ones."""

    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository's metadata row."""

    owner: str
    name: str
    vcs: str
    public: bool

    @property
    def ref(self) -> RepoName:
        return RepoName(self.owner, self.name)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What ``hostd token list`` shows: never the secret or its hash."""

    token_id: str
    scope: str
    created: float
    expires_at: float | None
    revoked: bool


class Accounts:
    """Account database operations."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the singlemalt.CredentialStore protocol ------------------------------

    def user(self, username: str) -> UserRecord | None:
        name = normalize_name(username)
        if name is None:
            return None
        row = self.db.connection().execute(
            "SELECT name, password_hash, credential_version FROM users WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        return UserRecord(row["name"], row["password_hash"], row["credential_version"])

    def token(self, token_id: str) -> TokenRecord | None:
        # Security: a token older than its owner's account was issued to an
        # earlier account of that name (its row outlived a delete that did
        # not cascade, e.g. in a sqlite3 shell): it is not this user's.
        row = self.db.connection().execute(
            "SELECT t.id, t.username, t.secret_hash, t.scope, t.expires_at, t.revoked FROM tokens AS t"
            " JOIN users AS u ON u.name = t.username WHERE t.id = ? AND t.created >= u.created",
            (token_id,),
        ).fetchone()
        if row is None:
            return None
        return TokenRecord(
            row["id"], row["username"], row["secret_hash"], Scope(row["scope"]),
            row["expires_at"], bool(row["revoked"]),
        )

    # -- users -----------------------------------------------------------------

    def _username(self, text: str) -> str:
        name = normalize_name(text)
        if name is None:
            raise AccountError(f"invalid user name: {text!r}")
        return name

    def _existing_user(self, conn: sqlite3.Connection, text: str) -> str:
        name = self._username(text)
        if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
            raise AccountError(f"no such user: {name}")
        return name

    def add_user(self, username: str, password: str) -> str:
        name = self._username(username)
        _check_password(password)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"user already exists: {name}")
            conn.execute(
                "INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)",
                (name, hash_password(password), time.time()),
            )
        return name

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        new_hash = hash_password(password)
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            conn.execute(
                "UPDATE users SET password_hash = ?, credential_version = credential_version + 1"
                " WHERE name = ?",
                (new_hash, name),
            )

    def delete_user(self, username: str) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            owned = conn.execute("SELECT COUNT(*) FROM repos WHERE owner = ?", (name,)).fetchone()
            if owned[0]:
                raise AccountError(f"{name} still owns {owned[0]} repositories; delete them first")
            # Security: the schema cascades these, but only on connections
            # with foreign keys on; a re-created user must not inherit them.
            conn.execute("DELETE FROM tokens WHERE username = ?", (name,))
            conn.execute("DELETE FROM grants WHERE username = ?", (name,))
            conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def users(self) -> list[str]:
        rows = self.db.connection().execute("SELECT name FROM users ORDER BY name")
        return [row["name"] for row in rows]

    # -- tokens ----------------------------------------------------------------

    def create_token(self, username: str, scope: Scope, expires_days: int | None) -> IssuedToken:
        issued = new_token()
        expires = None if expires_days is None else time.time() + expires_days * 86400
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            conn.execute(
                "INSERT INTO tokens (id, username, secret_hash, scope, expires_at, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (issued.token_id, name, issued.secret_hash, scope.value, expires, time.time()),
            )
        return issued

    def list_tokens(self, username: str) -> list[TokenInfo]:
        conn = self.db.connection()
        name = self._existing_user(conn, username)
        rows = conn.execute(
            "SELECT id, scope, created, expires_at, revoked FROM tokens WHERE username = ?"
            " ORDER BY created",
            (name,),
        )
        return [
            TokenInfo(r["id"], r["scope"], r["created"], r["expires_at"], bool(r["revoked"]))
            for r in rows
        ]

    def revoke_token(self, token_id: str) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT username FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise AccountError(f"no such token: {token_id}")
            conn.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,))
            conn.execute(
                "UPDATE users SET credential_version = credential_version + 1 WHERE name = ?",
                (row["username"],),
            )

    # -- repositories and grants ---------------------------------------------

    def repo(self, ref: RepoName) -> Repo | None:
        row = self.db.connection().execute(
            "SELECT owner, name, vcs, public FROM repos WHERE owner = ? AND name = ?",
            (ref.owner, ref.name),
        ).fetchone()
        return None if row is None else Repo(row["owner"], row["name"], row["vcs"], bool(row["public"]))

    def add_repo(self, ref: RepoName, vcs: str, public: bool) -> Repo:
        with self.db.transaction() as conn:
            self._existing_user(conn, ref.owner)
            if conn.execute(
                "SELECT 1 FROM repos WHERE owner = ? AND name = ?", (ref.owner, ref.name)
            ).fetchone():
                raise AccountError(f"repository already exists: {ref}")
            conn.execute(
                "INSERT INTO repos (owner, name, vcs, public, created) VALUES (?, ?, ?, ?, ?)",
                (ref.owner, ref.name, vcs, int(public), time.time()),
            )
        return Repo(ref.owner, ref.name, vcs, public)

    def delete_repo(self, ref: RepoName) -> Repo:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT vcs, public FROM repos WHERE owner = ? AND name = ?", (ref.owner, ref.name)
            ).fetchone()
            if row is None:
                raise AccountError(f"no such repository: {ref}")
            conn.execute("DELETE FROM repos WHERE owner = ? AND name = ?", (ref.owner, ref.name))
        return Repo(ref.owner, ref.name, row["vcs"], bool(row["public"]))

    def repos(self, *, public_only: bool = False) -> list[Repo]:
        sql = "SELECT owner, name, vcs, public FROM repos"
        if public_only:
            sql += " WHERE public = 1"
        rows = self.db.connection().execute(sql + " ORDER BY owner, name")
        return [Repo(r["owner"], r["name"], r["vcs"], bool(r["public"])) for r in rows]

    def grant(self, username: str, ref: RepoName, level: Level) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            if self._repo_row(conn, ref) is None:
                raise AccountError(f"no such repository: {ref}")
            conn.execute(
                "INSERT INTO grants (username, owner, name, level) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (username, owner, name) DO UPDATE SET level = excluded.level",
                (name, ref.owner, ref.name, level.name.lower()),
            )

    def revoke(self, username: str, ref: RepoName) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            cur = conn.execute(
                "DELETE FROM grants WHERE username = ? AND owner = ? AND name = ?",
                (name, ref.owner, ref.name),
            )
            if cur.rowcount == 0:
                raise AccountError(f"{name} has no grant on {ref}")

    def level(self, username: str | None, repo: Repo) -> Level:
        """The access level of a user (None: anonymous) on a repository."""
        base = Level.READ if repo.public else Level.NONE
        if username is None:
            return base
        if username == repo.owner:
            return Level.ADMIN
        row = self.db.connection().execute(
            "SELECT level FROM grants WHERE username = ? AND owner = ? AND name = ?",
            (username, repo.owner, repo.name),
        ).fetchone()
        return base if row is None else max(base, Level[row["level"].upper()])

    @staticmethod
    def _repo_row(conn: sqlite3.Connection, ref: RepoName) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT vcs FROM repos WHERE owner = ? AND name = ?", (ref.owner, ref.name)
        ).fetchone()
        return row


def login_name(text: str) -> str:
    """The name the login throttle counts an account's failures under.

    hostd's canonical (lower-case) name, so ``Alice`` and ``alice`` share one
    lock; a name hostd would refuse cannot log in, and gets singlemalt's
    default (NFKC case folding) so its spellings still share a counter.
    """
    return normalize_name(text) or canonical_name(text)


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise AccountError("password must be at least 8 characters")
    if len(password) > 1024:
        raise AccountError("password must be at most 1024 characters")
