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

from webob import exc

from hostd.responses import text_error

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
            answer = text_error(exc.HTTPOk, "ok")
        elif path == "/readyz":
            problem = self.ready()
            answer = text_error(exc.HTTPOk, "ready") if problem is None else text_error(
                exc.HTTPServiceUnavailable, problem)
        else:
            return self.app(environ, start_response)
        answer.cache_control = "no-store"
        return answer(environ, start_response)  # type: ignore[no-any-return]
