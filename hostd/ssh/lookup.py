"""sshd's ``AuthorizedKeysCommand``, answered by the gateway: one indexed query per offered key.

sshd asks about every key a client offers (and once more for the key it
signs with), with the key's fingerprint and the client's address (``hostd-ssh`` reads it from sshd). The
answer is the key's ``authorized_keys`` line, forcing ``hostd-ssh`` with
``restrict`` and naming the key (:func:`hostd.store.keys.authorized_keys_line`),
or nothing. A key removed from the database is unknown to the next lookup:
there is no file to rewrite, and what :class:`RememberedKeys` keeps answers
only while the database cannot.

Failed key authentications are counted like failed logins, per client
address (:class:`singlemalt.LoginThrottle`, with no account: the login
name is always ``git`` or ``hg``), and a locked-out address gets no key
without a query. A client offering the keys of its agent in turn fails
with the first ones before the right one succeeds, so a connection's
failures are counted only if none of its keys was accepted within
``settle`` seconds (longer than sshd's ``LoginGraceTime``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from hostd.ssh.wire import client_address
from hostd.store.database import DatabaseUnavailable
from hostd.store.keys import KeyGrant, authorized_keys_line
from singlemalt import LoginThrottle

log = logging.getLogger(__name__)

#: At most this many failed offers of one connection are counted (sshd's ``MaxAuthTries``).
MAX_COUNTED: Final = 6
#: Connections followed at once; the oldest are settled first past this.
MAX_FOLLOWED: Final = 4096


class KeyLookup(Protocol):
    def lookup(self, fingerprint: str) -> KeyGrant | None: ...


class RememberedKeys:
    """Keys looked up in the database, and remembered for when it cannot answer (stale-if-error).

    Every lookup asks the database, so a removed key is unknown at once; a
    grant is remembered for ``keep`` seconds only to answer while the
    database is down, as the pools serve reads from what they cached (a push
    is still refused then: the policy asks the database before any write).
    """

    def __init__(self, keys: KeyLookup, *, keep: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 size: int = 10_000) -> None:
        self.keys = keys
        self.keep = keep
        self._clock = clock
        self._size = size
        self._lock = threading.Lock()
        self._known: OrderedDict[str, tuple[float, KeyGrant | None]] = OrderedDict()

    def lookup(self, fingerprint: str) -> KeyGrant | None:
        try:
            grant = self.keys.lookup(fingerprint)
        except DatabaseUnavailable:
            with self._lock:
                seen, remembered = self._known.get(fingerprint, (float("-inf"), None))
            if self._clock() - seen > self.keep:
                raise
            log.warning("database unavailable: key %s answered from memory", fingerprint)
            return remembered
        with self._lock:
            self._known.pop(fingerprint, None)
            self._known[fingerprint] = (self._clock(), grant)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return grant


def forced_command(fingerprint: str) -> str:
    """The forced command of a key: what ``hostd-ssh`` sends the gateway to say which key it was."""
    return f"key {fingerprint}"


class KeyRequests:
    """The gateway's key handler (:data:`hostd.ssh.gateway.KeyHandler`)."""

    def __init__(self, keys: KeyLookup, throttle: LoginThrottle | None, *, settle: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.throttle = throttle
        self.settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        #: connection -> (first seen, failed offers, accepted)
        self._connections: OrderedDict[str, tuple[float, int, bool]] = OrderedDict()

    def __call__(self, fingerprint: str, connection: str) -> str:
        address = client_address(connection)
        self._settle()
        if self.throttle is not None and self.throttle.blocked(address, None):
            log.warning("key refused: client=%s is locked out after failed key authentications", address)
            return ""
        try:
            grant = self.keys.lookup(fingerprint)
        except DatabaseUnavailable as error:
            log.warning("key lookup for client=%s failed: %s", address, error)
            return ""
        self._follow(connection, accepted=grant is not None)
        if grant is None:
            log.info("unknown key client=%s fingerprint=%s", address, fingerprint)
            return ""
        return authorized_keys_line(grant, forced_command(fingerprint)) + "\n"

    def _follow(self, connection: str, *, accepted: bool) -> None:
        with self._lock:
            first, failed, ok = self._connections.pop(connection, (self._clock(), 0, False))
            self._connections[connection] = (first, failed + (not accepted), ok or accepted)

    def _settle(self) -> None:
        """Count the failures of connections that got no key within ``settle`` seconds."""
        now = self._clock()
        settled: list[tuple[str, int]] = []
        with self._lock:
            while self._connections:
                connection, (first, failed, ok) = next(iter(self._connections.items()))
                if now - first < self.settle and len(self._connections) <= MAX_FOLLOWED:
                    break
                del self._connections[connection]
                if not ok and failed:
                    settled.append((client_address(connection), min(failed, MAX_COUNTED)))
        if self.throttle is None:
            return
        for address, failed in settled:
            for _ in range(failed):
                self.throttle.record_failure(address, None)
