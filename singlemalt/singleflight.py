"""One thread at a time per key, so a slow job is done once and the others reuse it.

The verifier runs each uncached password check under its verification cache's turn
(:meth:`SingleFlight.turn` on the cache key).  When a CI fleet starts 32 clones at once with a
password the cache does not hold yet, one request pays for argon2 and the
others, waiting their turn, find its success in the verification cache
instead of 32 hashes competing for the worker's cores::

    flights = SingleFlight()
    with flights.turn(key):
        if not cache.contains(...):
            ...  # the slow check, then cache.add(...)

Keys with nobody holding or waiting for them are dropped, so memory is
bounded by the number of concurrent requests, not by the number of keys.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class _Turn:
    __slots__ = ("lock", "holders")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0


class SingleFlight:
    """Per-key mutual exclusion whose table only holds keys in use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[Hashable, _Turn] = {}

    def __repr__(self) -> str:
        return f"<SingleFlight keys={len(self._turns)}>"

    def pending(self, key: Hashable) -> int:
        """How many threads hold or are waiting for ``key``'s turn."""
        with self._lock:
            turn = self._turns.get(key)
            return turn.holders if turn else 0

    @contextlib.contextmanager
    def turn(self, key: Hashable) -> Iterator[None]:
        """Wait until no other thread is inside ``turn(key)``, then run the block."""
        with self._lock:
            turn = self._turns.setdefault(key, _Turn())
            turn.holders += 1
        try:
            with turn.lock:
                yield
        finally:
            with self._lock:
                turn.holders -= 1
                if not turn.holders:
                    del self._turns[key]
