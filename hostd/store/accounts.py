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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hostd.names import RepoName, normalize_name
from hostd.store.database import Connection, Database
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
    #: The storage shard holding it (hostd/store/shards.py).
    shard: str
    #: While ``hostd repo move`` takes it to another shard, that shard: pushes wait (hostd/ops/move.py).
    moving_to: str | None = None

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
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT name, password_hash, credential_version FROM users WHERE name = %s", (name,)
            ).fetchone()
        if row is None:
            return None
        return UserRecord(row["name"], row["password_hash"], row["credential_version"])

    def token(self, token_id: str) -> TokenRecord | None:
        # Security: a token older than its owner's account was issued to an
        # earlier account of that name (its row outlived a delete that did
        # not cascade, or was restored from an older backup): it is not this user's.
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT t.id, t.username, t.secret_hash, t.scope, t.expires_at, t.revoked FROM tokens AS t"
                " JOIN users AS u ON u.name = t.username WHERE t.id = %s AND t.created >= u.created",
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

    def _existing_user(self, conn: Connection, text: str) -> str:
        name = self._username(text)
        if conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone() is None:
            raise AccountError(f"no such user: {name}")
        return name

    def add_user(self, username: str, password: str) -> str:
        name = self._username(username)
        _check_password(password)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
                raise AccountError(f"user already exists: {name}")
            conn.execute(
                "INSERT INTO users (name, password_hash, created) VALUES (%s, %s, %s)",
                (name, hash_password(password), time.time()),
            )
        return name

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        new_hash = hash_password(password)
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            conn.execute(
                "UPDATE users SET password_hash = %s, credential_version = credential_version + 1"
                " WHERE name = %s",
                (new_hash, name),
            )

    def delete_user(self, username: str) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            row = conn.execute("SELECT COUNT(*) AS owned FROM repos WHERE owner = %s", (name,)).fetchone()
            if row is not None and row["owned"]:
                raise AccountError(f"{name} still owns {row['owned']} repositories; delete them first")
            # Security: the schema cascades these; deleted here as well so
            # that a re-created user can never inherit them.
            conn.execute("DELETE FROM tokens WHERE username = %s", (name,))
            conn.execute("DELETE FROM grants WHERE username = %s", (name,))
            conn.execute("DELETE FROM users WHERE name = %s", (name,))

    def users(self) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT name FROM users ORDER BY name").fetchall()
        return [row["name"] for row in rows]

    # -- tokens ----------------------------------------------------------------

    def create_token(self, username: str, scope: Scope, expires_days: int | None, *, label: str = "") -> IssuedToken:
        """A new token of ``username``'s, named ``label`` (checked by the caller); show ``.token`` once."""
        issued = new_token()
        expires = None if expires_days is None else time.time() + expires_days * 86400
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            conn.execute(
                "INSERT INTO tokens (id, username, secret_hash, scope, expires_at, created, label)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (issued.token_id, name, issued.secret_hash, scope.value, expires, time.time(), label),
            )
        return issued

    def list_tokens(self, username: str) -> list[TokenInfo]:
        with self.db.connection() as conn:
            name = self._existing_user(conn, username)
            rows = conn.execute(
                "SELECT id, scope, created, expires_at, revoked FROM tokens WHERE username = %s"
                " ORDER BY created",
                (name,),
            ).fetchall()
        return [
            TokenInfo(r["id"], r["scope"], r["created"], r["expires_at"], bool(r["revoked"]))
            for r in rows
        ]

    def revoke_token(self, token_id: str) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT username FROM tokens WHERE id = %s", (token_id,)).fetchone()
            if row is None:
                raise AccountError(f"no such token: {token_id}")
            conn.execute("UPDATE tokens SET revoked = true WHERE id = %s", (token_id,))
            conn.execute(
                "UPDATE users SET credential_version = credential_version + 1 WHERE name = %s",
                (row["username"],),
            )

    # -- repositories and grants ---------------------------------------------

    def repo(self, ref: RepoName) -> Repo | None:
        with self.db.connection() as conn:
            row = conn.execute(
                f"SELECT {_REPO_COLUMNS} FROM repos WHERE owner = %s AND name = %s", (ref.owner, ref.name)
            ).fetchone()
        return None if row is None else _repo(row)

    def add_repo(self, ref: RepoName, vcs: str, public: bool, *, shard: str | None = None) -> Repo:
        """Register a repository on ``shard``, or on the one :func:`place` picks (None)."""
        with self.db.transaction() as conn:
            self._existing_user(conn, ref.owner)
            if conn.execute(
                "SELECT 1 FROM repos WHERE owner = %s AND name = %s", (ref.owner, ref.name)
            ).fetchone():
                raise AccountError(f"repository already exists: {ref}")
            if shard is None:
                shard = place(conn)
            elif conn.execute("SELECT 1 FROM shards WHERE name = %s", (shard,)).fetchone() is None:
                raise AccountError(f"no such shard: {shard}")
            conn.execute(
                "INSERT INTO repos (owner, name, vcs, public, shard, created) VALUES (%s, %s, %s, %s, %s, %s)",
                (ref.owner, ref.name, vcs, public, shard, time.time()),
            )
        return Repo(ref.owner, ref.name, vcs, public, shard)

    def placement(self) -> str:
        """The shard :func:`place` would put a new repository on now."""
        with self.db.connection() as conn:
            return place(conn)

    def delete_repo(self, ref: RepoName) -> Repo:
        with self.db.transaction() as conn:
            row = conn.execute(
                f"DELETE FROM repos WHERE owner = %s AND name = %s RETURNING {_REPO_COLUMNS}", (ref.owner, ref.name)
            ).fetchone()
            if row is None:
                raise AccountError(f"no such repository: {ref}")
        return _repo(row)

    def repos(self, *, public_only: bool = False) -> list[Repo]:
        sql = f"SELECT {_REPO_COLUMNS} FROM repos"
        if public_only:
            sql += " WHERE public"
        with self.db.connection() as conn:
            rows = conn.execute(sql + " ORDER BY owner, name").fetchall()
        return [_repo(r) for r in rows]

    def grant(self, username: str, ref: RepoName, level: Level) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            if self._repo_row(conn, ref) is None:
                raise AccountError(f"no such repository: {ref}")
            conn.execute(
                "INSERT INTO grants (username, owner, name, level) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (username, owner, name) DO UPDATE SET level = excluded.level",
                (name, ref.owner, ref.name, level.name.lower()),
            )

    def revoke(self, username: str, ref: RepoName) -> None:
        with self.db.transaction() as conn:
            name = self._existing_user(conn, username)
            cur = conn.execute(
                "DELETE FROM grants WHERE username = %s AND owner = %s AND name = %s",
                (name, ref.owner, ref.name),
            )
            if cur.rowcount == 0:
                raise AccountError(f"{name} has no grant on {ref}")

    def level(self, username: str | None, repo: Repo) -> Level:
        """The access level of a user (None: anonymous) on a repository."""
        return access_level(username, repo, lambda name: self.grant_level(name, repo.ref))

    def grant_level(self, username: str, ref: RepoName) -> Level:
        """What a grant gives a user on a repository (NONE: no grant); ownership and public access aside."""
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT level FROM grants WHERE username = %s AND owner = %s AND name = %s",
                (username, ref.owner, ref.name),
            ).fetchone()
        return Level.NONE if row is None else Level[row["level"].upper()]

    @staticmethod
    def _repo_row(conn: Connection, ref: RepoName) -> dict[str, object] | None:
        row: dict[str, object] | None = conn.execute(
            "SELECT vcs FROM repos WHERE owner = %s AND name = %s", (ref.owner, ref.name)
        ).fetchone()
        return row


_REPO_COLUMNS = "owner, name, vcs, public, shard, moving_to"


def _repo(row: dict[str, Any]) -> Repo:
    return Repo(row["owner"], row["name"], row["vcs"], bool(row["public"]), row["shard"], row["moving_to"])


def place(conn: Connection) -> str:
    """The shard a new repository goes to: of those taking new repositories
    (not draining, weight above 0), the one with the fewest repositories for
    its weight; ties go to the first name.

    Deterministic, so where a repository lands can be told in advance and
    tested; spreading by count rather than at random keeps a new shard from
    staying empty by bad luck. Sizes are not counted: a shard's weight is
    the operator's say on how much it should hold.
    """
    row = conn.execute(
        "SELECT s.name FROM shards AS s LEFT JOIN repos AS r ON r.shard = s.name"
        " WHERE NOT s.draining AND s.weight > 0"
        " GROUP BY s.name, s.weight ORDER BY count(r.name)::float / s.weight, s.name LIMIT 1"
    ).fetchone()
    if row is None:
        raise AccountError("no shard takes new repositories: every shard is draining or has weight 0"
                           " (hostd shard list)")
    name: str = row["name"]
    return name


def access_level(username: str | None, repo: Repo, granted: Callable[[str], Level]) -> Level:
    """A user's level (None: anonymous): public repositories are readable by all, owners are
    admins, and anyone else has what ``granted(username)`` says, at least what the public has."""
    base = Level.READ if repo.public else Level.NONE
    if username is None:
        return base
    if username == repo.owner:
        return Level.ADMIN
    return max(base, granted(username))


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
