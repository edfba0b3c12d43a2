"""The health routes under WebTest: plain answers, never cached, everything else passed through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import webtest

from hostd.guard.health import HealthRoutes, storage_problem


def _inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app\n"]


def _app(problem: str | None = None) -> webtest.TestApp:
    return webtest.TestApp(HealthRoutes(_inner, ready=lambda: problem))


def test_healthz_answers_ok_in_plain_text_never_cached() -> None:
    response = _app("disk gone").get("/healthz")
    assert response.text == "ok\n"
    assert response.content_type == "text/plain" and response.charset.lower() == "utf-8"
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_says_ready_or_the_problem() -> None:
    assert _app().get("/readyz").text == "ready\n"
    refused = _app("repository root is not writable").get("/readyz", status=503)
    assert refused.text == "repository root is not writable\n"
    assert refused.headers["Cache-Control"] == "no-store"
    assert _app().head("/readyz").body == b""


def test_every_other_path_reaches_the_app() -> None:
    assert _app("down").get("/alice/demo.git/info/refs").text == "the app\n"


def test_storage_problem(tmp_path: Path) -> None:
    assert storage_problem(tmp_path) is None
    assert storage_problem(tmp_path / "missing") is not None
