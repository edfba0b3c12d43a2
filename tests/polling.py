"""Waiting for something another thread or process will make true, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll ``condition`` every ``interval`` seconds; return the seconds it took, fail after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)
    return time.monotonic() - start
