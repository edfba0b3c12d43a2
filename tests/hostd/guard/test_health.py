"""The health routes under WebTest: plain answers, never cached, everything else passed through; the
data directory's identity that ``/readyz`` names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import webtest

from hostd.guard.health import INSTANCE_HEADER, HealthRoutes, ensure_instance, instance_id, storage_problem


def _inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app\n"]


def _app(problem: str | None = None, instance: str | None = None) -> webtest.TestApp:
    return webtest.TestApp(HealthRoutes(_inner, ready=lambda: problem, instance=instance))


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


def test_readyz_names_the_data_directory_ready_or_not_and_nothing_else_does() -> None:
    for problem, status in ((None, 200), ("disk gone", 503)):
        client = _app(problem, instance="a" * 32)
        assert client.get("/readyz", status=status).headers[INSTANCE_HEADER] == "a" * 32
        assert INSTANCE_HEADER not in client.get("/healthz").headers
        assert INSTANCE_HEADER not in client.get("/alice/demo.git/info/refs").headers
    # A pool built without an identity (a data directory from before it) names none.
    assert INSTANCE_HEADER not in _app().get("/readyz").headers


def test_a_data_directory_gets_one_identity_and_a_copy_elsewhere_another(tmp_path: Path) -> None:
    first = tmp_path / "var" / "instance"
    first.parent.mkdir()
    assert instance_id(first) is None
    ensure_instance(first)
    identity = instance_id(first)
    assert identity is not None and re.fullmatch(r"[0-9a-f]{32}", identity)
    ensure_instance(first)  # kept: the pools already running name it
    assert instance_id(first) == identity
    # The file holds a random id, not the identity itself, nor anything of the secret beside it.
    assert identity not in first.read_text() and (tmp_path / "var").name not in first.read_text()
    copy = tmp_path / "copy" / "instance"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    assert instance_id(copy) not in (None, identity)


@pytest.mark.parametrize("content", [b"", b"not hex at all\n", b"ab" * 8 + b"\n", b"\xff" * 32], ids=[
    "empty", "garbage", "too-short", "not-ascii"])
def test_a_broken_identity_file_names_none_until_made_again(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "instance"
    path.write_bytes(content)
    assert instance_id(path) is None
    ensure_instance(path)
    assert instance_id(path) is not None
    assert [p.name for p in tmp_path.iterdir()] == ["instance"]  # no partial file left behind
