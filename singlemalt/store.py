"""Where users and tokens come from: the records, the contract, and an htpasswd store.

A :class:`CredentialStore` only looks records up; it never checks a
password (that is :class:`~singlemalt.verify.Verifier`'s job), so a
database-backed store is two small queries::

    class SqlStore:
        def user(self, username):
            row = db.execute("SELECT hash, version FROM users WHERE name = ?", (username,))
            ...
            return UserRecord(username, row.hash, row.version)

        def token(self, token_id):
            ...

``credential_version`` must change whenever the password does; the
verification cache keys on it, so a change invalidates cached logins.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

from passlib.apache import HtpasswdFile

from singlemalt.identity import Scope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user; ``password_hash`` is ``None`` for users who may only use tokens."""

    username: str
    password_hash: str | None = field(repr=False)
    credential_version: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored access token: only the hash of its secret is kept."""

    token_id: str
    username: str
    secret_hash: str = field(repr=False)
    scope: Scope
    expires_at: float | None
    revoked: bool


class CredentialStore(Protocol):
    """Looks up users and tokens; ``None`` when there is no such record."""

    def user(self, username: str) -> UserRecord | None: ...

    def token(self, token_id: str) -> TokenRecord | None: ...


class HtpasswdStore:
    """Users from an Apache htpasswd file, reloaded when the file changes.

    The file is read once at construction (a missing or malformed file is a
    configuration error and raises) and again whenever its mtime, ctime,
    size or inode changes.  If a later reload fails, every lookup answers
    ``None`` until the file changes again: failing closed beats serving
    users that may have been removed.  htpasswd has no tokens.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = _stamp(self._path)
        self._file: HtpasswdFile | None = HtpasswdFile(self._path)

    def __repr__(self) -> str:
        return f"HtpasswdStore({self._path!r})"

    def user(self, username: str) -> UserRecord | None:
        """The user's record; the version is derived from the stored hash."""
        current = self._current()
        try:
            stored = current.get_hash(username) if current is not None else None
        except ValueError:  # a name htpasswd cannot hold (":", newline, > 255 bytes)
            return None
        if stored is None:
            return None
        raw = stored if isinstance(stored, bytes) else str(stored).encode("utf-8")
        version = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")
        return UserRecord(username, raw.decode("utf-8", "replace"), version)

    def token(self, token_id: str) -> TokenRecord | None:
        """Always ``None``: htpasswd files hold no tokens."""
        return None

    def _current(self) -> HtpasswdFile | None:
        stamp = _stamp(self._path)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._file = self._load()
            return self._file

    def _load(self) -> HtpasswdFile | None:
        try:
            loaded = HtpasswdFile(self._path)
        except (OSError, ValueError) as error:
            log.error("cannot load %s (%s); refusing its users until it changes",
                      self._path, error)
            return None
        log.info("reloaded %s", self._path)
        return loaded


def _stamp(path: str) -> tuple[int, ...] | None:
    """What identifies a version of the file; ``None`` if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
