"""Health endpoints, mounted in front of (outside) singlemalt on every pool.

``/healthz`` answers whether the process serves requests at all: HAProxy
polls it every couple of seconds, so it does no I/O and reveals nothing.
``/readyz`` also checks that the repository root is readable and writable,
and names the data directory the pool serves (:data:`INSTANCE_HEADER`), so
that ``make up`` can tell its own pools from another stack's on the same
ports (:func:`hostd.ops.stack.health_problem`).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
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


#: The header of every ``/readyz`` answer that names the data directory the pool serves.
INSTANCE_HEADER = "X-Hostd-Instance"
#: What the instance file holds: 128 random bits in hex, made once (:func:`ensure_instance`).
_RANDOM_ID = re.compile(r"[0-9a-f]{32}\Z")


def _random_id(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return text if _RANDOM_ID.match(text) else None


def ensure_instance(path: Path) -> None:
    """Give the data directory of ``path`` (``Settings.instance_file``) its random id, unless it has a valid one.

    Random, so that it says nothing of the secret or of anything else in
    the directory; written whole (a temporary file renamed), so a pool never
    reads half of it.
    """
    if _random_id(path) is not None:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(secrets.token_hex(16) + "\n", encoding="ascii")
    os.replace(partial, path)


def instance_id(path: Path) -> str | None:
    """What :data:`INSTANCE_HEADER` says for the data directory of ``path``; None when it has no valid id.

    The random id hashed with the directory's resolved path: a copy of a
    data directory elsewhere is another directory, and answers as one. The
    hash keeps the path out of an answer anyone can ask for.
    """
    random_id = _random_id(path)
    if random_id is None:
        return None
    return hashlib.sha256(f"{random_id}\0{path.parent.resolve()}".encode()).hexdigest()[:32]


class HealthRoutes:
    """Answer ``/healthz`` and ``/readyz``; pass everything else to ``app``.

    ``instance``: this pool's data directory (:func:`instance_id`), named in
    every ``/readyz`` answer, ready or not.
    """

    def __init__(self, app: WSGIApp, *, ready: Callable[[], str | None], instance: str | None = None) -> None:
        self.app = app
        self.ready = ready
        self.instance = instance

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            answer = text_error(exc.HTTPOk, "ok")
        elif path == "/readyz":
            problem = self.ready()
            answer = text_error(exc.HTTPOk, "ready") if problem is None else text_error(
                exc.HTTPServiceUnavailable, problem)
            if self.instance is not None:
                answer.headers[INSTANCE_HEADER] = self.instance
        else:
            return self.app(environ, start_response)
        answer.cache_control = "no-store"
        return answer(environ, start_response)  # type: ignore[no-any-return]
