"""Remember successful password verifications so they are not paid for twice.

A password check costs an argon2 (or bcrypt) computation on purpose, and git
and hg clients send the password with every request of a clone or push.
:class:`VerificationCache` remembers "this username, at this credential
version, with this password, verified" for a few minutes, in a small
in-process LRU in front of memcached (shared by all workers)::

    cache = VerificationCache(SafeMemcache("127.0.0.1:11211"), secret=key_bytes)
    verifier = Verifier(store, cache=cache)

The cache key is ``HMAC-SHA256(secret, username \\0 version \\0 password)``:
without ``secret`` the entries in memcached are useless for guessing
passwords, and the credential version (which changes with the stored hash)
makes a password change invalidate every entry at once.  Only successes are
stored; the value is a constant, so no secret is in any key, value or log.

The memcached expiry slides: a worker that finds an entry there (at most
once per ``local_ttl``, after its own copy expires) renews it for another
``ttl``.  A credential in steady use, such as a CI fleet's, therefore never
needs a second slow check, while one unused for ``ttl`` is forgotten.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

from singlemalt.memcache import SafeMemcache
from singlemalt.singleflight import SingleFlight

_PREFIX: Final = "sm:v:"
_VERIFIED: Final = b"1"
_MIN_SECRET: Final = 16


class VerificationCache:
    """A thread-safe two-level cache of successful password verifications."""

    def __init__(
        self,
        memcache: SafeMemcache | None,
        secret: bytes,
        *,
        ttl: int = 300,
        local_ttl: float = 30.0,
        local_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(secret) < _MIN_SECRET:
            raise ValueError(f"the cache secret must be at least {_MIN_SECRET} bytes")
        self._memcache = memcache
        self._secret = secret
        self._ttl = ttl
        self._local_ttl = local_ttl
        self._local_size = local_size
        self._clock = clock
        self._local: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._flights = SingleFlight()

    def __repr__(self) -> str:
        return f"<VerificationCache ttl={self._ttl} local={len(self._local)}/{self._local_size}>"

    def contains(self, username: str, version: int, password: str) -> bool:
        """Whether this exact username, version and password verified recently."""
        key = self._key(username, version, password)
        if key is None:
            return False
        now = self._clock()
        with self._lock:
            expires = self._local.get(key)
            if expires is not None and expires > now:
                self._local.move_to_end(key)
                return True
        if self._memcache is not None and self._memcache.get(key) == _VERIFIED:
            self._remember_locally(key, now)
            self._memcache.touch(key, expire=self._ttl)
            return True
        return False

    @contextlib.contextmanager
    def turn(self, username: str, version: int, password: str) -> Iterator[None]:
        """Wait while another thread checks this exact credential (see :mod:`singlemalt.singleflight`).

        Keyed by the cache key, so a guesser's wrong passwords never make the
        real user's requests wait; a credential that is never cached takes no turn.
        """
        key = self._key(username, version, password)
        with self._flights.turn(key) if key is not None else contextlib.nullcontext():
            yield

    def add(self, username: str, version: int, password: str) -> None:
        """Record a successful verification (never call this for a failure)."""
        key = self._key(username, version, password)
        if key is None:
            return
        self._remember_locally(key, self._clock())
        if self._memcache is not None:
            self._memcache.set(key, _VERIFIED, expire=self._ttl)

    def _remember_locally(self, key: str, now: float) -> None:
        with self._lock:
            self._local[key] = now + self._local_ttl
            self._local.move_to_end(key)
            while len(self._local) > self._local_size:
                self._local.popitem(last=False)

    def _key(self, username: str, version: int, password: str) -> str | None:
        # "\0" separates the fields, so a username containing one could
        # collide with another username/password split: never cache those.
        if "\0" in username:
            return None
        message = f"{username}\0{version}\0{password}".encode("utf-8", "surrogatepass")
        return _PREFIX + hmac.new(self._secret, message, hashlib.sha256).hexdigest()
