"""The WSGI app test_threadworker runs under gunicorn: every answer is the serving worker's PID.

``/hold`` keeps its thread busy until the file ``release`` appears in the
directory named by ``THREADWORKER_GATE`` (60 s at most), after touching
``held-<pid>`` there so the test knows which worker holds it. ``/read``
reads the whole request body first, however long the client takes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/read":
        try:
            environ["wsgi.input"].read()
        except OSError:
            start_response("408 Request Timeout", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
    if environ["PATH_INFO"] == "/hold":
        gate = Path(os.environ["THREADWORKER_GATE"])
        (gate / f"held-{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while not (gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
