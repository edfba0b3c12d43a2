"""Slow down password guessing: lock out clients that keep failing.

Failed logins are counted in memcached, so the limits hold across all
workers, under two subjects:

- the pair (client address, username): ``limit`` failures within ``window``
  seconds lock that pair out for ``lockout`` seconds: someone guessing one
  account's password;
- the client address alone: ``address_limit`` failures (default ten times
  ``limit``) lock the address out: someone trying many accounts.

A username alone is deliberately never locked out: that would let anyone
lock any user out of their own repositories by failing on purpose (and a
CI job with a stale token would lock out its owner everywhere). While
locked out, the middleware answers 429 without checking the password::

    throttle = LoginThrottle(SafeMemcache("127.0.0.1:11211"), limit=10)
    SingleMalt(app, ..., throttle=throttle)

When memcached is unavailable the throttle allows everything: it is a
brake on guessing, not a part of authentication, and refusing every login
because a cache is down would turn a memcached outage into a full outage.
Authentication itself still fails closed.  Keys are SHA-256 hashes, so
usernames and addresses never appear in memcached.
"""

from __future__ import annotations

import hashlib
from typing import Final

from singlemalt.memcache import SafeMemcache

_PREFIX: Final = "sm:t:"


class LoginThrottle:
    """Counts failed logins and answers whether a login attempt is locked out."""

    def __init__(
        self,
        memcache: SafeMemcache,
        *,
        limit: int = 10,
        address_limit: int | None = None,
        window: int = 300,
        lockout: int = 300,
    ) -> None:
        address_limit = 10 * limit if address_limit is None else address_limit
        if min(limit, address_limit, window, lockout) < 1:
            raise ValueError("limits, window and lockout must be positive")
        self._memcache = memcache
        self.limit = limit
        self.address_limit = address_limit
        self.window = window
        self.lockout = lockout

    def blocked(self, address: str, username: str | None) -> bool:
        """Whether this address, or this username from this address, is locked out.

        Asked on every request with credentials, so both locks are read in one round trip.
        """
        locks = [_key("lock", subject) for subject, _ in self._subjects(address, username)]
        return bool(self._memcache.get_many(locks))

    def record_failure(self, address: str, username: str | None) -> None:
        """Count one failed login; lock the subject out when it reaches its limit."""
        for subject, limit in self._subjects(address, username):
            if self._count(_key("fail", subject)) >= limit:
                self._memcache.set(_key("lock", subject), b"1", expire=self.lockout)

    def _subjects(self, address: str, username: str | None) -> list[tuple[str, int]]:
        subjects = [("address\0" + address, self.address_limit)]
        if username is not None:
            subjects.append(("user\0" + address + "\0" + username, self.limit))
        return subjects

    def _count(self, key: str) -> int:
        """Increment the failure counter, starting a new window if there is none."""
        count = self._memcache.incr(key)
        if count is None and self._memcache.add(key, b"1", expire=self.window):
            return 1
        if count is None:
            # Another worker created the counter between our incr and add
            # (or memcached is down, and this is 0: fail open).
            count = self._memcache.incr(key)
        return count or 0


def _key(kind: str, subject: str) -> str:
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_PREFIX}{kind}:{digest}"
