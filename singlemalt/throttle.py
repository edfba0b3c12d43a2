"""Slow down password guessing: lock out clients that keep failing, not the people who share their address.

Failed logins are counted in memcached, so the limits hold across all
workers, under two subjects:

- the pair (client address, account): ``limit`` failures within ``window``
  seconds lock that pair out for ``lockout`` seconds: someone guessing one
  account's password;
- the client address alone: ``address_limit`` failures (default ten times
  ``limit``) lock the address out *for credentials it has not seen
  succeed*: someone trying many accounts.

Everyone behind one address (an office NAT, a CI fleet) shares that second
lock, so a credential that verified from an address in the last
``known_for`` seconds (a week by default) is let through it: the attacker
is slowed, the office is not.  That credential is still subject to its own
(address, account) lock, and "credential" means the exact password or
token: a guess at a known user's password from the same address is an
unknown credential and gets the 429.  A week because an office's users log
in every working day and the mark only ever skips the address lock, never
the password check.  The marks live sealed in memcached (shared by all
workers) and in each worker's memory (they survive a memcached restart in
the workers that saw them).

Every guess also costs an argon2 check, CPU the guesser spends on our
machine long before enough of them fail to lock an address.  So once an
address has failed ``suspect_after`` times within ``window`` (by default as
often as one account may), a slow check of credentials not known from it
spends from the worker's :class:`~singlemalt.checkbudget.CheckBudget`, and
past that budget the middleware answers 429 without hashing anything.

An account alone is deliberately never locked out: that would let anyone
lock any user out of their own repositories by failing on purpose.
Accounts are counted under their canonical name (``canonical_name``; by
default Unicode NFKC and case folding, an application passes its own
rule), so ``Alice`` and ``alice`` share one lock.  While locked out, the
middleware answers 429 without checking the password::

    throttle = LoginThrottle(SafeMemcache("127.0.0.1:11211"), secret=key_bytes, limit=10)
    SingleMalt(app, ..., throttle=throttle)

memcached holds nothing an outsider can forge (:mod:`singlemalt.sealed`):
keys are HMACs under ``secret``, so nobody can compute the key that locks
out ``alice``, and locks and marks are sealed values.  The failure counters
are plain memcached counters, because ``incr`` cannot carry a MAC.  Someone
who can list the keys can therefore bump a counter that exists (a failure
happened within ``window``) without knowing whose it is; that brings the
lock of that one (address, account) pair, or of one address, a few
failures closer, and the lock is still only ever written by a worker that
counted a real failure itself.  Nobody can create a counter for a chosen
subject, or a lock at all.  (Anyone with memcached access can also delete
keys: that only removes the brake, as a memcached outage does.)

When memcached is unavailable the throttle allows everything: it is a
brake on guessing, not a part of authentication, and refusing every login
because a cache is down would turn a memcached outage into a full outage.
Authentication itself still fails closed.

Reading the locks is a memcached round trip (both locks and the mark in
one), most of what an authenticated request costs (a git or hg operation is
3 to 10 requests).  So each worker remembers, for ``recheck`` seconds after
the read, the exact logins that read no lock and then verified: the same
address presenting the same credential again skips the read
(:meth:`LoginThrottle.passed`).  Every other request, and so every guess,
reads the locks as before, and a refusal or a failure for an address drops
what the worker remembers for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from singlemalt.checkbudget import CheckBudget
from singlemalt.credentials import BasicCredentials, Credentials
from singlemalt.memcache import SafeMemcache
from singlemalt.sealed import Sealer

_PREFIX: Final = "sm:t:"
_LOCKED: Final = b"locked"
_KNOWN: Final = b"known"
_WEEK: Final = 7 * 86400


@dataclass(frozen=True, slots=True)
class Admission:
    """What the throttle says of one login before its credentials are checked."""

    #: Refuse it with 429 without checking.
    locked: bool
    #: A slow check of these credentials spends from the worker's :class:`CheckBudget`: they are
    #: not known from this address, which has failed ``suspect_after`` times or more lately.
    budgeted: bool


def canonical_name(name: str) -> str:
    """The default account canonicalization: Unicode NFKC case folding (``ALICE``, ``Alice``, ``ａｌｉｃｅ``)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


class LoginThrottle:
    """Counts failed logins and answers whether a login attempt is locked out.

    ``clock`` (monotonic) times the per-worker memory; ``wall_clock`` dates
    the sealed values every worker shares.
    """

    def __init__(
        self,
        memcache: SafeMemcache,
        *,
        secret: bytes,
        limit: int = 10,
        address_limit: int | None = None,
        window: int = 300,
        lockout: int = 300,
        known_for: int = _WEEK,
        recheck: float = 2.0,
        canonical: Callable[[str], str] = canonical_name,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        checks: CheckBudget | None = None,
        suspect_after: int | None = None,
    ) -> None:
        address_limit = 10 * limit if address_limit is None else address_limit
        if min(limit, address_limit, window, lockout, known_for) < 1:
            raise ValueError("limits, window, lockout and known_for must be positive")
        self._memcache = memcache
        self._sealer = Sealer(secret, _PREFIX, clock=wall_clock)
        self.limit = limit
        self.address_limit = address_limit
        self.window = window
        self.lockout = lockout
        self.known_for = known_for
        self._canonical = canonical
        self._wall_clock = wall_clock
        self._passes = _RecentPasses(recheck, clock)
        self._known = _KnownCredentials()
        self._checks = CheckBudget(clock=clock) if checks is None else checks
        self.suspect_after = limit if suspect_after is None else suspect_after

    def __repr__(self) -> str:
        return f"<LoginThrottle limit={self.limit} address_limit={self.address_limit} {self._passes!r}>"

    def blocked(self, address: str, username: str | None, credentials: Credentials | None = None) -> bool:
        """Whether this login is locked out (see :meth:`admit`)."""
        return self.admit(address, username, credentials).locked

    def may_check(self, address: str) -> bool:
        """Whether a slow password check may be spent now on an unknown credential from ``address``.

        The middleware asks this only for logins :meth:`admit` found
        ``budgeted`` (see :mod:`singlemalt.checkbudget`).
        """
        return self._checks.take(address)

    def admit(self, address: str, username: str | None, credentials: Credentials | None = None) -> Admission:
        """Whether this login is locked out (its (address, account) pair is, or its address is and
        ``credentials`` have not verified from there within ``known_for``), and whether they have.

        Asked on every request with credentials, so both locks and the mark
        are read in one round trip, and not at all for ``credentials`` that
        passed moments ago.
        """
        proof = self._passes.proof(address, credentials)
        if proof is not None and self._passes.recent(proof):
            return Admission(locked=False, budgeted=False)
        account = self._account(username)
        address_lock = self._sealer.key("lock", "address", address)
        keys = [address_lock]
        pair_lock = None if account is None else self._sealer.key("lock", "user", address, account)
        if pair_lock is not None:
            keys.append(pair_lock)
        mark = self._mark(address, account, credentials)
        if mark is not None:
            keys.append(mark)
        failures = self._sealer.key("fail", "address", address)
        keys.append(failures)
        found = self._memcache.get_many(keys)
        known = self._known_mark(found, mark)  # also remembered, so :meth:`passed` need not write it
        # Security: the address lock stops every credential but one that
        # verified from this address before; the pair lock stops even that.
        locked = self._valid(found, pair_lock) or (self._valid(found, address_lock) and not known)
        if locked:
            self._passes.forget(address)
        elif proof is not None:
            self._passes.checked(proof, address)
        return Admission(locked, budgeted=not known and _count(found.get(failures)) >= self.suspect_after)

    def passed(self, address: str, credentials: Credentials) -> None:
        """These credentials, just found not locked by :meth:`blocked`, verified.

        The fast path is remembered until ``recheck`` seconds after that read,
        never longer: a pass taken from memory is not a new read and is not
        remembered again.  The credential is marked as known from this
        address (written to memcached at most about once a day per worker).
        """
        proof = self._passes.proof(address, credentials)
        if proof is not None and not self._passes.confirm(proof):
            return  # a pass from memory (its read saw to the mark), or cancelled by a failure
        username = credentials.username if isinstance(credentials, BasicCredentials) else None
        mark = self._mark(address, self._account(username), credentials)
        now = self._wall_clock()
        if mark is None or self._known.expires(mark) > now + self.known_for - min(86400, self.known_for / 2):
            return
        self._known.remember(mark, now + self.known_for)
        self._memcache.set(mark, self._sealer.seal(mark, _KNOWN, ttl=self.known_for), expire=self.known_for)

    def record_failure(self, address: str, username: str | None) -> None:
        """Count one failed login; lock the subject out when it reaches its limit."""
        self._passes.forget(address)
        account = self._account(username)
        subjects: list[tuple[tuple[str, ...], int]] = [(("address", address), self.address_limit)]
        if account is not None:
            subjects.append((("user", address, account), self.limit))
        for subject, limit in subjects:
            if self._count(self._sealer.key("fail", *subject)) >= limit:
                lock = self._sealer.key("lock", *subject)
                self._memcache.set(lock, self._sealer.seal(lock, _LOCKED, ttl=self.lockout), expire=self.lockout)

    def _account(self, username: str | None) -> str | None:
        return None if username is None else self._canonical(username)

    def _mark(self, address: str, account: str | None, credentials: Credentials | None) -> str | None:
        """The key of "these credentials verified from this address"; it names the secret, so it is an HMAC."""
        if credentials is None:
            return None
        if isinstance(credentials, BasicCredentials):
            return self._sealer.key("known", address, "basic", account or "", credentials.password)
        return self._sealer.key("known", address, "bearer", credentials.token)

    def _valid(self, found: dict[str, bytes], key: str | None) -> bool:
        return key is not None and self._sealer.open(key, found.get(key)) is not None

    def _known_mark(self, found: dict[str, bytes], mark: str | None) -> bool:
        if mark is None:
            return False
        if self._known.expires(mark) > self._wall_clock():
            return True
        opened = self._sealer.open(mark, found.get(mark))
        if opened is None:
            return False
        self._known.remember(mark, opened.expires)
        return True

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


def _count(raw: bytes | None) -> int:
    """A failure counter as memcached returns it (``b"7"``); 0 for a miss or anything else."""
    return int(raw) if raw is not None and raw.isdigit() and len(raw) < 12 else 0


class _KnownCredentials:
    """One worker's marks of credentials known from an address: mark key -> wall-clock expiry."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._marks: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def expires(self, mark: str) -> float:
        with self._lock:
            return self._marks.get(mark, float("-inf"))

    def remember(self, mark: str, expires: float) -> None:
        with self._lock:
            self._marks[mark] = expires
            self._marks.move_to_end(mark)
            while len(self._marks) > self._size:
                self._marks.popitem(last=False)


class _RecentPasses:
    """One worker's logins that read no lock and verified, each for ``seconds`` after its read.

    Security: only the exact (address, credential) pair that passed skips the
    read, so a guess (any other password or token) always reads the locks. A
    lock set by another worker applies here within ``seconds``, or at once
    after this worker sees a failure or a refusal for the address. Proofs are
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

    def confirm(self, proof: bytes) -> bool:
        """Remember a checked proof as passed; whether there was one (not a pass from memory)."""
        with self._lock:
            entry = self._checked.pop(proof, None)
            if entry is None:
                return False
            address, read_at = entry
            _put(self._passed, proof, (address, read_at + self._seconds), self._size)
            return True

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
