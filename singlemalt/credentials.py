"""Parse the ``Authorization`` header into frozen credential values.

This is the trust boundary for credentials: whatever a client sends is
turned into a :class:`BasicCredentials`, a :class:`BearerCredentials`, or
``None``.  The parser never raises, so a hostile header can only ever be
"no usable credentials"::

    >>> parse_authorization("Basic YWxpY2U6czNjcmV0")
    BasicCredentials(username='alice')
    >>> parse_authorization("Bearer smt_abc") is not None
    True
    >>> parse_authorization("Basic !!!") is None
    True

Secrets are excluded from ``repr`` so that a stray log line or traceback
cannot leak them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final

#: Longer headers are refused unparsed; no legitimate credential is this big,
#: and it bounds the work a client can make us do before authentication.
MAX_HEADER_LENGTH: Final = 8 * 1024

# RFC 7235 token68: the only syntax a Bearer token may have.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# C0 controls and DEL: never valid in a username, and would let a client
# forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """A username and password from ``Authorization: Basic``."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BearerCredentials:
    """An access token from ``Authorization: Bearer``."""

    token: str = field(repr=False)


Credentials = BasicCredentials | BearerCredentials


def parse_authorization(header: str | None) -> Credentials | None:
    """Parse an ``Authorization`` header value; ``None`` if absent or malformed.

    The scheme name is case-insensitive (RFC 7235).  Basic credentials must be
    valid base64 of UTF-8 ``username:password`` with a non-empty username free
    of control characters.  Unknown schemes are ``None`` too: singlemalt only
    understands Basic and Bearer.
    """
    if not isinstance(header, str) or len(header) > MAX_HEADER_LENGTH:
        return None
    parts = header.strip().split(None, 1)
    if len(parts) != 2:
        return None
    scheme, value = parts[0].lower(), parts[1].strip()
    if scheme == "basic":
        return _parse_basic(value)
    if scheme == "bearer":
        return BearerCredentials(value) if _TOKEN68.fullmatch(value) else None
    return None


def _parse_basic(value: str) -> BasicCredentials | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon or not username or _CONTROL.search(username):
        return None
    return BasicCredentials(username, password)
