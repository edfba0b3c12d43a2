"""Remember successful password verifications so they are not paid for twice.

A password check costs an argon2 (or bcrypt) computation on purpose, and git
and hg clients send the password with every request of a clone or push.
:class:`VerificationCache` remembers "this user record, with this password,
verified" for a few minutes, in a small in-process LRU in front of
memcached (shared by all workers)::

    cache = VerificationCache(SafeMemcache("127.0.0.1:11211"), secret=key_bytes)
    verifier = Verifier(store, cache=cache)

An entry is bound to the stored credential, not only to the name: its key
is ``HMAC(secret, username, credential version, stored hash, password)``.
The stored hash carries a random salt, so a user deleted and re-created
under the same name (whose version starts again where the old one did), or
one whose password changed, can never reproduce an old entry, in any
worker's LRU or in memcached, up or restarted.  Without ``secret`` the keys
are useless for guessing passwords, and only successes are stored.

The value in memcached is sealed (:mod:`singlemalt.sealed`): a MAC over key,
value and expiry, so an entry kept alive or written by someone else is
ignored.  The expiry slides: a worker that finds an entry there (at most
once per ``local_ttl``, after its own copy expires) seals it again for
another ``ttl``.  A credential in steady use, such as a CI fleet's,
therefore never needs a second slow check, while one unused for ``ttl`` is
forgotten.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

from singlemalt.memcache import SafeMemcache
from singlemalt.sealed import Sealer
from singlemalt.singleflight import SingleFlight
from singlemalt.store import UserRecord

_PREFIX: Final = "sm:v:"
_VERIFIED: Final = b"verified"


class VerificationCache:
    """A thread-safe two-level cache of successful password verifications.

    ``clock`` (monotonic) ages the local LRU; ``wall_clock`` dates the sealed
    values in memcached, which every process must agree on.
    """

    def __init__(
        self,
        memcache: SafeMemcache | None,
        secret: bytes,
        *,
        ttl: int = 300,
        local_ttl: float = 30.0,
        local_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sealer = Sealer(secret, _PREFIX, clock=wall_clock)
        self._memcache = memcache
        self._ttl = ttl
        self._local_ttl = local_ttl
        self._local_size = local_size
        self._clock = clock
        self._local: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._flights = SingleFlight()

    def __repr__(self) -> str:
        return f"<VerificationCache ttl={self._ttl} local={len(self._local)}/{self._local_size}>"

    def contains(self, user: UserRecord, password: str) -> bool:
        """Whether ``password`` verified recently against exactly this stored record."""
        key = self._key(user, password)
        if key is None:
            return False
        now = self._clock()
        with self._lock:
            expires = self._local.get(key)
            if expires is not None and expires > now:
                self._local.move_to_end(key)
                return True
        if self._memcache is not None and self._sealer.open(key, self._memcache.get(key)) is not None:
            self._remember_locally(key, now)
            self._store(key)
            return True
        return False

    @contextlib.contextmanager
    def turn(self, user: UserRecord, password: str) -> Iterator[None]:
        """Wait while another thread checks this exact credential (see :mod:`singlemalt.singleflight`).

        Keyed by the cache key, so a guesser's wrong passwords never make the
        real user's requests wait; a credential that is never cached takes no turn.
        """
        key = self._key(user, password)
        with self._flights.turn(key) if key is not None else contextlib.nullcontext():
            yield

    def add(self, user: UserRecord, password: str) -> None:
        """Record a successful verification (never call this for a failure)."""
        key = self._key(user, password)
        if key is None:
            return
        self._remember_locally(key, self._clock())
        self._store(key)

    def _store(self, key: str) -> None:
        if self._memcache is not None:
            self._memcache.set(key, self._sealer.seal(key, _VERIFIED, ttl=self._ttl), expire=self._ttl)

    def _remember_locally(self, key: str, now: float) -> None:
        with self._lock:
            self._local[key] = now + self._local_ttl
            self._local.move_to_end(key)
            while len(self._local) > self._local_size:
                self._local.popitem(last=False)

    def _key(self, user: UserRecord, password: str) -> str | None:
        if user.password_hash is None:
            return None
        # Security: the stored hash (random salt) is what a re-created user
        # can never share with the deleted one; the version covers stores
        # whose hash does not change when a credential is revoked.
        return self._sealer.key(user.username, str(user.credential_version), user.password_hash, password)
