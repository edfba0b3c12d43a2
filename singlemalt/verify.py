"""Check credentials against a store and produce an :class:`~singlemalt.identity.Identity`.

:class:`Verifier` is the authentication step of the middleware.  It accepts
Basic passwords, access tokens sent as a Basic password (what git and hg
send) and Bearer tokens::

    verifier = Verifier(HtpasswdStore("/etc/singlemalt/htpasswd"),
                        cache=VerificationCache(memcache, secret=key_bytes))
    verifier.verify(parse_authorization(environ.get("HTTP_AUTHORIZATION")))

Password checks are deliberately slow (argon2), so the verifier keeps them
to one per login: a verification cache skips them for repeated requests,
and an unknown user costs one slow check too, so response times do not
reveal which usernames exist.  Concurrent requests with the same uncached
credential take turns (:meth:`VerificationCache.turn`), so a burst of them
costs one slow check, not one each.  ``slow_verifications`` counts them, and each
one is logged at INFO (``slow password verification user='alice'``), so the
count can be observed from outside a worker process too.

The records, the store contract and the password hasher live in
:mod:`singlemalt.store` and :mod:`singlemalt.passwords`; they are
re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from singlemalt.cache import VerificationCache
from singlemalt.credentials import BearerCredentials, Credentials
from singlemalt.identity import PASSWORD, TOKEN, Identity, Scope
from singlemalt.passwords import PasswordHasher, hash_password
from singlemalt.store import CredentialStore, HtpasswdStore, TokenRecord, UserRecord
from singlemalt.tokens import hash_token_secret, parse_token, verify_token_secret

__all__ = [
    "CredentialStore",
    "HtpasswdStore",
    "PasswordHasher",
    "Permit",
    "TokenRecord",
    "TooManyChecks",
    "UserRecord",
    "Verifier",
    "hash_password",
]

log = logging.getLogger(__name__)

# Compared against when the token id is unknown, so that case does the same
# work as a wrong secret.
_NO_TOKEN_HASH: Final = hash_token_secret("")


#: Asked before a slow password check: whether one may be spent now.
Permit = Callable[[], bool]


class TooManyChecks(Exception):
    """A slow password check was needed and its ``permit`` said no (see :meth:`Verifier.verify`)."""


def _spend(permit: Permit | None) -> None:
    if permit is not None and not permit():
        raise TooManyChecks()


class Verifier:
    """Turns credentials into an identity, or ``None`` if they are not valid.

    ``hasher`` defaults to production argon2 parameters; tests pass a cheap
    one.  ``clock`` (wall time) decides token expiry.
    """

    def __init__(
        self,
        store: CredentialStore,
        *,
        cache: VerificationCache | None = None,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._cache = cache
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self._lock = threading.Lock()
        self._slow_verifications = 0
        # Unknown users are checked against a hash of the same scheme and
        # cost as the last real one, so they cost what a known user costs
        # even when the store holds cheaper bcrypt hashes than our argon2.
        self._reference_hash = self._hasher.dummy_hash

    def __repr__(self) -> str:
        return f"<Verifier store={self._store!r} cache={self._cache!r}>"

    @property
    def slow_verifications(self) -> int:
        """How many slow password hash verifications this verifier has run."""
        with self._lock:
            return self._slow_verifications

    def verify(self, credentials: Credentials, *, permit: Permit | None = None) -> Identity | None:
        """The identity these credentials prove, or ``None``.

        ``permit`` is asked right before a slow password check (never for a
        cached one, nor for tokens, which are cheap to check); when it says
        no, :class:`TooManyChecks` is raised and nothing is checked.
        """
        if isinstance(credentials, BearerCredentials):
            return self._verify_token(credentials.token, None)
        if parse_token(credentials.password) is not None:
            return self._verify_token(credentials.password, credentials.username)
        return self._verify_password(credentials.username, credentials.password, permit)

    def _verify_password(self, username: str, password: str, permit: Permit | None) -> Identity | None:
        user = self._store.user(username)
        if user is None or user.password_hash is None:
            _spend(permit)
            self._slow_verify(username, password, self._reference_hash)
            return None
        identity = Identity(user.username, PASSWORD, Scope.WRITE)
        cache = self._cache
        if cache is None:
            _spend(permit)
            return identity if self._check_stored(username, password, user.password_hash) else None
        # The cache is asked about the record just read, stored hash and all:
        # an entry made for a deleted user never matches a re-created one.
        if cache.contains(user, password):
            return identity
        with cache.turn(user, password):
            if cache.contains(user, password):
                return identity
            _spend(permit)
            if not self._check_stored(username, password, user.password_hash):
                return None
            cache.add(user, password)
        return identity

    def _check_stored(self, username: str, password: str, password_hash: str) -> bool:
        if not self._hasher.usable(password_hash):
            log.warning("user %r has a password hash of an unsupported scheme", username)
            self._slow_verify(username, password, self._reference_hash)
            return False
        self._reference_hash = password_hash
        return self._slow_verify(username, password, password_hash)

    def _verify_token(self, text: str, username: str | None) -> Identity | None:
        parsed = parse_token(text)
        if parsed is None:
            log.info("rejected a bearer credential that is not a singlemalt token")
            return None
        token_id, secret = parsed
        record = self._store.token(token_id)
        matches = verify_token_secret(secret, record.secret_hash if record else _NO_TOKEN_HASH)
        reason = self._token_problem(record, matches, username)
        if record is None or reason is not None:
            log.info("rejected token %s: %s", token_id, reason)
            return None
        return Identity(record.username, TOKEN, record.scope, token_id)

    def _token_problem(
        self, record: TokenRecord | None, matches: bool, username: str | None
    ) -> str | None:
        if record is None:
            return "unknown token"
        if not matches:
            return "wrong secret"
        if record.revoked:
            return "revoked"
        if record.expires_at is not None and record.expires_at <= self._clock():
            return "expired"
        if username is not None and username != record.username:
            return "belongs to another user"
        if self._store.user(record.username) is None:
            return "owner no longer exists"
        return None

    def _slow_verify(self, username: str, password: str, password_hash: str) -> bool:
        with self._lock:
            self._slow_verifications += 1
        # Never the password: the username is all an operator needs to see
        # which logins miss the verification cache.
        log.info("slow password verification user=%r", username)
        return self._hasher.verify(password, password_hash)
