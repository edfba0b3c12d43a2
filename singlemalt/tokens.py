"""Access tokens ("app passwords"): issue, parse and check them.

A token looks like ``smt_<id>_<secret>``: a fixed prefix so secret scanners
and humans can recognise it, a 12-character public id used to find the
stored record (and safe to log; letters and digits only, so it never starts
with "-" and reads as an option on a command line, and a double click
selects all of it), and a random secret of 43 url-safe
characters (256 bits) of which only a hash is stored::

    >>> issued = new_token()
    >>> token_id, secret = parse_token(issued.token)
    >>> token_id == issued.token_id
    True
    >>> verify_token_secret(secret, issued.secret_hash)
    True

Show ``issued.token`` to the user once; store ``token_id`` and
``secret_hash``.  Tokens can be sent as ``Authorization: Bearer <token>`` or
as the password of Basic auth (which is what git and hg send).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "smt_"
ID_LENGTH: Final = 12
_ID_ALPHABET: Final = string.ascii_letters + string.digits  # 62**12, about 71 bits
_SECRET_BYTES: Final = 32  # 256 bits, 43 url-safe characters

# The id has a fixed length, so the "_" separator is found by position even
# though ids minted before ids were alphanumeric may contain "_" and "-".
# The secret is bounded so a client cannot make us hash megabytes.
_TOKEN = re.compile(
    rf"{PREFIX}(?P<id>[A-Za-z0-9_-]{{{ID_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{32,128}})"
)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly minted token: the full ``token`` goes to the user, the rest to storage."""

    token_id: str
    token: str = field(repr=False)
    secret_hash: str


def new_token() -> IssuedToken:
    """Mint a new random token with the ``secrets`` module."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedToken(token_id, f"{PREFIX}{token_id}_{secret}", hash_token_secret(secret))


def parse_token(text: str) -> tuple[str, str] | None:
    """Split ``smt_<id>_<secret>`` into ``(id, secret)``; ``None`` if it is not a token."""
    match = _TOKEN.fullmatch(text)
    if match is None:
        return None
    return match["id"], match["secret"]


def hash_token_secret(secret: str) -> str:
    """Hash a token secret for storage: SHA-256, hex.

    A fast hash is right here, unlike for passwords: the secret is 256 bits
    from ``secrets``, so there is nothing to brute-force and a slow KDF
    would only slow down every request (GitHub stores its tokens the same
    way).
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_token_secret(secret: str, secret_hash: str) -> bool:
    """Check a presented secret against a stored hash in constant time."""
    return hmac.compare_digest(hash_token_secret(secret), secret_hash)
