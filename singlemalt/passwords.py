"""Hash new passwords with argon2id; verify argon2 and the htpasswd schemes.

New hashes are argon2id with argon2-cffi's default cost (t=3, m=64 MiB,
p=4, RFC 9106's second recommended option).  Verification also accepts what
``htpasswd`` writes (bcrypt, SHA-256/512-crypt, Apache MD5-crypt) so an
existing file keeps working, but never plaintext, crypt(3) DES or unsalted
SHA-1, which ``htpasswd`` can also produce::

    >>> hasher = PasswordHasher()
    >>> stored = hasher.hash("correct horse")
    >>> hasher.verify("correct horse", stored)
    True

Tests pass a cheap cost (``PasswordHasher(time_cost=1, memory_cost=8,
parallelism=1)``); production code should keep the defaults.
"""

from __future__ import annotations

import functools
import logging
import secrets
from typing import Final

from passlib.context import CryptContext

log = logging.getLogger(__name__)

#: Schemes accepted when verifying; the first one hashes new passwords.
SCHEMES: Final = ("argon2", "bcrypt", "sha512_crypt", "sha256_crypt", "apr_md5_crypt")
_BCRYPT_MAX_BYTES: Final = 72


class PasswordHasher:
    """A configured ``CryptContext`` plus a dummy hash for unknown users."""

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4) -> None:
        self._context = CryptContext(
            schemes=list(SCHEMES),
            default="argon2",
            argon2__type="ID",
            argon2__rounds=time_cost,
            argon2__memory_cost=memory_cost,
            argon2__parallelism=parallelism,
        )
        self.dummy_hash: str = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Hash a new password with argon2id."""
        hashed: str = self._context.hash(password)
        return hashed

    def usable(self, password_hash: str) -> bool:
        """Whether ``password_hash`` is of a scheme this hasher verifies."""
        return self._context.identify(password_hash) is not None

    def verify(self, password: str, password_hash: str) -> bool:
        """Check a password against a stored hash; ``False`` for unusable hashes, never raises."""
        secret: str | bytes = password
        if self._context.identify(password_hash) == "bcrypt":
            # bcrypt only ever used the first 72 bytes (htpasswd -B hashed
            # exactly those); bcrypt>=5 refuses longer input instead.
            secret = password.encode("utf-8", "surrogatepass")[:_BCRYPT_MAX_BYTES]
        try:
            return bool(self._context.verify(secret, password_hash))
        except (ValueError, TypeError) as error:
            # Malformed stored hashes, or passwords a scheme cannot take
            # (bcrypt refuses NUL bytes): a failed verification either way.
            log.debug("password verification failed: %s", type(error).__name__)
            return False


@functools.cache
def _default_hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str, *, hasher: PasswordHasher | None = None) -> str:
    """Hash a new password with production argon2id parameters (or ``hasher``'s)."""
    return (hasher or _default_hasher()).hash(password)
