"""How much password hashing a worker spends on credentials it has no reason to trust.

A password check costs an argon2 computation on purpose (about 0.1-0.2 s of
a core here), which makes every guess a unit of CPU the attacker chooses to
spend on our machine.  The login throttle stops an address after enough
*failures*, but a few addresses guessing in parallel keep every request
thread and every core busy with argon2 long before that, and the clones and
pushes of everyone else wait behind them.

:class:`CheckBudget` is a per-worker pair of token buckets: one for the
worker as a whole and one per client address.  The middleware spends from
it only for credentials that did not verify from that address before, and
only once the address has failed often (:class:`~singlemalt.throttle.LoginThrottle`,
``suspect_after``); a known credential, or one in the verification cache,
costs nothing.  So under a guessing attack the people who were already
working keep working, and a guesser gets 429 ("retry in a few seconds")
without any hashing::

    budget = CheckBudget(rate=1.0, burst=6, address_rate=0.5, address_burst=3)
    if budget.take("203.0.113.9"):
        ...  # one slow check may run

The defaults allow a worker one check a second (a sixth of a core,
sustained) with bursts of 6, and one address half of that rate with bursts
of 3: a new colleague signing in, or a CI fleet starting with a credential
no worker has seen (concurrent requests with one credential share one
check, :mod:`singlemalt.singleflight`), is not refused, while 40 parallel
guessers get one or two guesses a second per worker in all, and 429 for the
rest, without any hashing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class _Bucket:
    """``tokens`` refilled at ``rate`` per second up to ``burst``."""

    __slots__ = ("tokens", "at")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.at = now

    def refill(self, rate: float, burst: float, now: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now


class CheckBudget:
    """Token buckets for slow checks: the worker's, and each address's.  Thread-safe."""

    def __init__(
        self,
        *,
        rate: float = 1.0,
        burst: float = 6.0,
        address_rate: float = 0.5,
        address_burst: float = 3.0,
        addresses: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(rate, burst, address_rate, address_burst, addresses) <= 0:
            raise ValueError("rates, bursts and the number of addresses must be positive")
        self._rate, self._burst = rate, burst
        self._address_rate, self._address_burst = address_rate, address_burst
        self._addresses = addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._worker = _Bucket(burst, clock())
        self._by_address: OrderedDict[str, _Bucket] = OrderedDict()

    def __repr__(self) -> str:
        return f"<CheckBudget rate={self._rate}/s address_rate={self._address_rate}/s>"

    def take(self, address: str) -> bool:
        """Spend one check for ``address`` if both its bucket and the worker's have one."""
        with self._lock:
            now = self._clock()
            bucket = self._by_address.get(address)
            if bucket is None:
                bucket = self._by_address[address] = _Bucket(self._address_burst, now)
                while len(self._by_address) > self._addresses:
                    self._by_address.popitem(last=False)
            self._by_address.move_to_end(address)
            bucket.refill(self._address_rate, self._address_burst, now)
            self._worker.refill(self._rate, self._burst, now)
            if bucket.tokens < 1 or self._worker.tokens < 1:
                return False
            bucket.tokens -= 1
            self._worker.tokens -= 1
            return True
