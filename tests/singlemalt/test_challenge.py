"""challenge: the responses singlemalt renders, and bounded draining of request bodies."""

from __future__ import annotations

import io
from typing import Any

import pytest
import webob
import webtest

from singlemalt import challenge


class CountingInput(io.BytesIO):
    def __init__(self, data: bytes = b"") -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def environ(body: bytes = b"", **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = webob.Request.blank("/repo", method="POST").environ
    env["wsgi.input"] = CountingInput(body)
    env["CONTENT_LENGTH"] = str(len(body)) if body else ""
    env.update(extra)
    return env


def render(response: Any, env: dict[str, Any] | None = None, limit: int = 100) -> webob.Response:
    env = env if env is not None else environ()
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    body = b"".join(challenge.reply(env, start_response, response, drain_limit=limit))
    return webob.Response(body=body, status=captured["status"], headerlist=captured["headers"])


def test_bad_request_carries_the_reason() -> None:
    response = render(challenge.bad_request("ambiguous parameter: cmd"))
    assert response.status == "400 ambiguous parameter: cmd"
    assert response.content_type == "text/plain"
    assert response.text == "ambiguous parameter: cmd\n"


def test_unauthorized_challenges_with_basic() -> None:
    response = render(challenge.unauthorized("hostd"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="hostd", charset="UTF-8"'


def test_forbidden_shows_the_reason_in_body_and_status_line() -> None:
    response = render(challenge.forbidden("You have read-only access to alice/demo."))
    assert response.status == "403 You have read-only access to alice/demo."
    assert response.text == "You have read-only access to alice/demo.\n"
    assert response.content_type == "text/plain"


def test_reasons_are_made_safe_for_a_status_line() -> None:
    response = render(challenge.forbidden("caf\u00e9\r\nX-Evil: 1" + "x" * 300))
    assert response.status.startswith("403 caf???X-Evil: 1xxx")
    assert len(response.status) == 4 + 200
    assert response.text.startswith("caf\u00e9??X-Evil: 1xxx")
    assert len(response.text) == 200 + 1


@pytest.mark.parametrize("reason", ["", " ", "x", "\u00e9"])
def test_no_reason_keeps_the_standard_phrase(reason: str) -> None:
    assert render(challenge.forbidden(reason)).status == "403 Forbidden"


def test_not_found_says_nothing() -> None:
    response = render(challenge.not_found())
    assert response.status == "404 Not Found"
    assert response.text == "not found\n"


def test_too_many_requests() -> None:
    response = render(challenge.too_many_requests(300))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "300"


def test_html_accepting_clients_still_get_plain_text() -> None:
    env = environ(HTTP_ACCEPT="text/html")
    assert render(challenge.forbidden("no"), env).text == "no\n"


def test_responses_pass_wsgi_lint() -> None:
    for response in (challenge.bad_request("x"), challenge.unauthorized("r"),
                     challenge.forbidden("y"), challenge.not_found(),
                     challenge.too_many_requests(5)):
        def app(environ: Any, start_response: Any, response: Any = response) -> Any:
            return challenge.reply(environ, start_response, response)

        webtest.TestApp(app, lint=True).post("/", params=b"x" * 10, status="*")
        webtest.TestApp(app, lint=True).head("/", status="*")


@pytest.mark.parametrize(
    ("body", "extra", "read", "closes"),
    [
        pytest.param(b"", {}, 0, False, id="no-body"),
        pytest.param(b"", {"CONTENT_LENGTH": "0"}, 0, False, id="zero-length"),
        pytest.param(b"", {"CONTENT_LENGTH": None}, 0, False, id="length-none"),
        pytest.param(b"a" * 50, {}, 50, False, id="small-body-drained"),
        pytest.param(b"a" * 100, {}, 100, False, id="exactly-the-limit"),
        pytest.param(b"a" * 1000, {}, 100, True, id="large-body-cut-short"),
        pytest.param(b"a" * 10, {"CONTENT_LENGTH": "50"}, 10, True, id="client-sent-less"),
        pytest.param(b"a" * 10, {"CONTENT_LENGTH": "ten"}, 0, True, id="bad-length"),
        pytest.param(b"a" * 10, {"CONTENT_LENGTH": "-5"}, 0, True, id="negative-length"),
        pytest.param(b"a" * 10, {"HTTP_EXPECT": "100-continue"}, 0, True, id="expect-continue"),
        pytest.param(b"a" * 50, {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "",
                                 "wsgi.input_terminated": True}, 50, False, id="chunked-drained"),
        pytest.param(b"a" * 500, {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "",
                                  "wsgi.input_terminated": True}, 100, True, id="chunked-large"),
        pytest.param(b"a" * 50, {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": ""}, 0,
                     True, id="chunked-unterminated-input"),
    ],
)
def test_drain(body: bytes, extra: dict[str, Any], read: int, closes: bool) -> None:
    env = environ(body)
    env.update(extra)
    if env.get("CONTENT_LENGTH") is None:
        del env["CONTENT_LENGTH"]
    response = render(challenge.unauthorized("r"), env, limit=100)
    assert env["wsgi.input"].bytes_read == read
    assert (response.headers.get("Connection") == "close") is closes


def test_drain_survives_a_broken_input() -> None:
    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise OSError("client went away")

    env = environ(b"x", **{"wsgi.input": Broken(), "CONTENT_LENGTH": "10"})
    response = render(challenge.not_found(), env)
    assert response.headers["Connection"] == "close"
    assert response.status_code == 404


def test_default_drain_limit() -> None:
    assert challenge.DEFAULT_DRAIN_LIMIT == 64 * 1024
