"""At most one warning per interval for a thing that can happen on every request.

A dead memcached, a forged cached value or an unreadable flag can fail every
request of every worker; one log line each would bury the log (and cost an
outage in disk I/O).  :class:`LogBudget` counts the occurrences and says when
the next line is due, with how many it stands for::

    budget = LogBudget(60.0)
    due = budget.spend()          # call once per occurrence
    if due is not None:
        log.warning("memcached unreachable (%d failures since the last report)", due)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LogBudget:
    """Counts occurrences; allows one report per ``interval`` seconds.  Thread-safe."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._unreported = 0

    def __repr__(self) -> str:
        return f"<LogBudget interval={self._interval}s unreported={self._unreported}>"

    def spend(self) -> int | None:
        """Count one occurrence; the number since the last report if one is due now, else None."""
        with self._lock:
            self._unreported += 1
            now = self._clock()
            if now < self._next:
                return None
            self._next = now + self._interval
            count, self._unreported = self._unreported, 0
            return count
