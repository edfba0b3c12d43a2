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

Reading the locks is a memcached round trip, most of what an authenticated
request costs (a git or hg operation is 3 to 10 requests). So each worker
remembers, for ``recheck`` seconds after the read, the exact logins that
read no lock and then verified: the same address presenting the same
credential again skips the read (:meth:`LoginThrottle.passed`). Every other
request, and so every guess, reads the locks as before, and a failure or a
lock seen for an address drops what the worker remembers for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from singlemalt.credentials import BasicCredentials, Credentials
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
        recheck: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        address_limit = 10 * limit if address_limit is None else address_limit
        if min(limit, address_limit, window, lockout) < 1:
            raise ValueError("limits, window and lockout must be positive")
        self._memcache = memcache
        self.limit = limit
        self.address_limit = address_limit
        self.window = window
        self.lockout = lockout
        self._passes = _RecentPasses(recheck, clock)

    def __repr__(self) -> str:
        return f"<LoginThrottle limit={self.limit} address_limit={self.address_limit} {self._passes!r}>"

    def blocked(self, address: str, username: str | None, credentials: Credentials | None = None) -> bool:
        """Whether this address, or this username from this address, is locked out.

        Asked on every request with credentials, so both locks are read in one
        round trip, and not at all for ``credentials`` that passed moments ago.
        """
        proof = self._passes.proof(address, credentials)
        if proof is not None and self._passes.recent(proof):
            return False
        locks = [_key("lock", subject) for subject, _ in self._subjects(address, username)]
        locked = bool(self._memcache.get_many(locks))
        if locked:
            self._passes.forget(address)
        elif proof is not None:
            self._passes.checked(proof, address)
        return locked

    def passed(self, address: str, credentials: Credentials) -> None:
        """These credentials, just found not locked by :meth:`blocked`, verified.

        Remembered until ``recheck`` seconds after that read, never longer: a
        pass taken from memory is not a new read and is not remembered again.
        """
        proof = self._passes.proof(address, credentials)
        if proof is not None:
            self._passes.confirm(proof)

    def record_failure(self, address: str, username: str | None) -> None:
        """Count one failed login; lock the subject out when it reaches its limit."""
        self._passes.forget(address)
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


class _RecentPasses:
    """One worker's logins that read no lock and verified, each for ``seconds`` after its read.

    Security: only the exact (address, credential) pair that passed skips the
    read, so a guess (any other password or token) always reads the locks. A
    lock set by another worker applies here within ``seconds``, or at once
    after this worker sees a failure or a lock for the address. Proofs are
    HMACs under a key that lives and dies with the process: no password is
    kept, and nothing can be precomputed.
    """

    def __init__(self, seconds: float, clock: Callable[[], float], size: int = 4096) -> None:
        self._seconds = seconds
        self._clock = clock
        self._size = size
        self._key = secrets.token_bytes(32)
        self._checked: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # proof -> (address, read at)
        self._passed: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # proof -> (address, valid until)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"recheck={self._seconds}s remembered={len(self._passed)}"

    def proof(self, address: str, credentials: Credentials | None) -> bytes | None:
        if credentials is None or self._seconds <= 0:
            return None
        if isinstance(credentials, BasicCredentials):
            secret = f"basic\0{credentials.username}\0{credentials.password}"
        else:
            secret = f"bearer\0{credentials.token}"
        message = f"{address}\0{secret}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def recent(self, proof: bytes) -> bool:
        with self._lock:
            entry = self._passed.get(proof)
            return entry is not None and entry[1] > self._clock()

    def checked(self, proof: bytes, address: str) -> None:
        with self._lock:
            _put(self._checked, proof, (address, self._clock()), self._size)

    def confirm(self, proof: bytes) -> None:
        with self._lock:
            entry = self._checked.pop(proof, None)
            if entry is not None:
                address, read_at = entry
                _put(self._passed, proof, (address, read_at + self._seconds), self._size)

    def forget(self, address: str) -> None:
        with self._lock:
            for table in (self._checked, self._passed):
                for proof in [p for p, (a, _) in table.items() if a == address]:
                    del table[proof]


def _put(table: OrderedDict[bytes, tuple[str, float]], proof: bytes, value: tuple[str, float], size: int) -> None:
    table[proof] = value
    table.move_to_end(proof)
    while len(table) > size:
        table.popitem(last=False)
