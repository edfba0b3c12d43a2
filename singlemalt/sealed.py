"""Values in memcached that only holders of the server secret can name or write.

memcached has no access control: anything that can reach it can list every
key (``lru_crawler metadump all``) and write any value.  So whatever decides
access (a login lock, a feature flag, a cached verification) is *sealed*:
its key is an HMAC of what it is about, so nobody without the secret can
compute the key that locks out ``alice``, and its value carries an expiry
and an HMAC over key, expiry and payload, so a forged value, a value copied
to another key or replayed after its expiry, or a corrupted one is ignored::

    sealer = Sealer(secret, "sm:t:")
    key = sealer.key("lock", "192.0.2.7", "alice")    # "sm:t:<64 hex digits>"
    memcache.set(key, sealer.seal(key, b"locked", ttl=300), expire=300)
    opened = sealer.open(key, memcache.get(key))        # Opened(payload, expires) or None

The expiry is wall-clock time (every process and host shares it, unlike a
monotonic clock), checked on every read: memcached's own expiry is only
housekeeping, since anyone can ``touch`` a key.  A value whose MAC does not
match is logged (at most once per ``log_interval``, with a count; never the
key, the value or the secret) and treated as absent.

What sealing cannot do: stop someone with access to memcached from deleting
or flushing keys.  That removes a lock or a cached login (the same as a
memcached restart: the throttle fails open, verification gets slow), but it
never grants access.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from singlemalt.logbudget import LogBudget

log = logging.getLogger(__name__)

_MIN_SECRET: Final = 16
_VERSION: Final = b"s1"
# version, expiry (whole seconds), payload (hex), MAC (hex): ASCII only, so
# a parser of whatever memcached hands back needs nothing but this pattern.
_SEALED: Final = re.compile(rb"s1\.([0-9]{1,12})\.((?:[0-9a-f]{2}){0,256})\.([0-9a-f]{64})")
# memcached keys: printable ASCII without spaces, at most 250 bytes.
_PREFIX: Final = re.compile(r"[\x21-\x7e]{1,100}")


@dataclass(frozen=True, slots=True)
class Opened:
    """A value that was sealed with our secret for this key and has not expired."""

    payload: bytes
    expires: float


class Sealer:
    """Names keys and seals values for one purpose (one key ``prefix``).

    Keys and MACs use separate keys derived from ``secret`` and ``prefix``, so
    a value sealed for one purpose never opens under another.  Thread-safe.
    """

    def __init__(
        self,
        secret: bytes,
        prefix: str,
        *,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < _MIN_SECRET:
            raise ValueError(f"the secret must be at least {_MIN_SECRET} bytes")
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"a key prefix is 1-100 printable ASCII characters without spaces: {prefix!r}")
        self.prefix = prefix
        # Keyed once: each key or MAC then copies the state (a third of the cost of hmac.new).
        self._names = hmac.new(_derive(secret, "name", prefix), digestmod=hashlib.sha256)
        self._macs = hmac.new(_derive(secret, "mac", prefix), digestmod=hashlib.sha256)
        self._clock = clock
        self._forgeries = LogBudget(log_interval, clock)

    def __repr__(self) -> str:
        return f"<Sealer prefix={self.prefix!r}>"

    def key(self, *parts: str) -> str:
        """The memcached key for ``parts``; computable only with the secret.

        Each part is length-prefixed, so no choice of parts (NUL bytes
        included) can produce another tuple's key.
        """
        names = self._names.copy()
        names.update("".join([f"{len(part)}:{part}" for part in parts]).encode("utf-8", "surrogatepass"))
        return self.prefix + names.hexdigest()

    def seal(self, key: str, payload: bytes, *, ttl: float) -> bytes:
        """``payload`` (at most 256 bytes) for ``key``, valid for ``ttl`` seconds from now."""
        if len(payload) > 256:
            raise ValueError("a sealed payload is at most 256 bytes")
        expires = int(self._clock() + ttl) + 1
        hex_payload = payload.hex().encode("ascii")
        return b".".join((_VERSION, str(expires).encode("ascii"), hex_payload, self._mac(key, expires, hex_payload)))

    def open(self, key: str, raw: bytes | None) -> Opened | None:
        """The payload sealed for ``key``, or ``None``: absent, expired, forged or corrupted. Never raises."""
        if raw is None:
            return None
        match = _SEALED.fullmatch(raw)
        if match is None or not hmac.compare_digest(
            self._mac(key, int(match[1]), match[2]), match[3]
        ):
            self._report_forged()
            return None
        expires = int(match[1])
        if expires <= self._clock():
            # Genuine but stale: memcached kept it longer than we meant (its
            # clock, or someone touched or re-set it). Not worth a warning.
            return None
        return Opened(bytes.fromhex(match[2].decode("ascii")), float(expires))

    def _mac(self, key: str, expires: int, hex_payload: bytes) -> bytes:
        macs = self._macs.copy()
        macs.update(b"\0".join((key.encode("ascii", "replace"), str(expires).encode("ascii"), hex_payload)))
        return macs.hexdigest().encode("ascii")

    def _report_forged(self) -> None:
        count = self._forgeries.spend()
        if count is None:
            return
        log.warning(
            "ignored %d forged or corrupted memcached value(s) under %s since the last report",
            count, self.prefix,
        )


def _derive(secret: bytes, use: str, prefix: str) -> bytes:
    return hmac.new(secret, f"singlemalt sealed\0{use}\0{prefix}".encode(), hashlib.sha256).digest()
