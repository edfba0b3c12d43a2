"""Health endpoints, mounted in front of (outside) singlemalt on every pool.

``/healthz`` answers whether the process serves requests at all: HAProxy
polls it every couple of seconds, so it does no I/O and reveals nothing.
``/readyz`` also checks that the repository root is readable and writable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def storage_problem(root: Path) -> str | None:
    """None when ``root`` can be listed and written, else what is wrong."""
    try:
        os.listdir(root)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".readyz-"):
            pass
    except OSError as error:
        return f"storage root {root} unusable: {error.strerror}"
    return None


class HealthRoutes:
    """Answer ``/healthz`` and ``/readyz``; pass everything else to ``app``."""

    def __init__(self, app: WSGIApp, *, ready: Callable[[], str | None]) -> None:
        self.app = app
        self.ready = ready

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _plain(start_response, "200 OK", "ok")
        if path == "/readyz":
            problem = self.ready()
            if problem is None:
                return _plain(start_response, "200 OK", "ready")
            return _plain(start_response, "503 Service Unavailable", problem)
        return self.app(environ, start_response)


def _plain(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
         ("Cache-Control", "no-store")],
    )
    return [body]
