"""Logging setup for every hostd process.

It depends on the standard library only: no flags, no memcached, no network.
A logging path that can itself fail (or log) is how one memcached error
became an 11-hour outage; this module must never import anything that can.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Send log records to stderr, which the supervisor collects."""
    root = logging.getLogger()
    if any(getattr(h, "_hostd", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._hostd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
