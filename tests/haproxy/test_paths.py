"""One canonical form of the path: HAProxy refuses ambiguous paths before routing.

Every case of ``tests/path_cases.py`` (the table singlemalt's tests read too)
is sent over HTTP/1.1 and HTTP/2 (``:path``) to the real HAProxy: a refused
path gets HAProxy's 400 with the table's reason and reaches no pool; a fine
one reaches a pool exactly as sent.
"""

from __future__ import annotations

import pytest

from tests.path_cases import PATH_CASES, SEPARATOR, PathCase

from .haproxy_runner import HAProxy
from .http_clients import Response, h1_request, h2_request

TRANSPORTS = ("h1", "h2")
# What a git client sends, so a fine path would go to a pool that speaks git.
GIT_AGENT = (("User-Agent", "git/2.39.5"),)


def _send(proxy: HAProxy, transport: str, target: str) -> Response:
    request = h1_request if transport == "h1" else h2_request
    return request(proxy.https, "GET", target, GIT_AGENT)


def _refused(response: Response) -> tuple[int, str | None, bytes]:
    return response.status, response.header("x-echo-pool"), response.body


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", PATH_CASES, ids=[case.name for case in PATH_CASES])
def test_path(proxy: HAProxy, case: PathCase, transport: str) -> None:
    target = case.path + "?service=git-upload-pack"
    response = _send(proxy, transport, target)
    if case.reason is None:
        assert response.header("x-echo-pool") is not None, (response.status, response.body[:200])
        assert (response.status, response.json()["target"]) == (200, target)
    else:
        assert _refused(response) == (400, None, case.reason.encode() + b"\n")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_raw_backslash_is_refused(proxy: HAProxy, transport: str) -> None:
    response = _send(proxy, transport, "/alice\\proj.git/HEAD")
    assert _refused(response) == (400, None, SEPARATOR.encode() + b"\n")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_query_string_may_encode_anything(proxy: HAProxy, transport: str) -> None:
    target = "/alice/proj/file/tip?path=a%2Fb%2F..%2F%2E%2E%5C&x=%00&y=%zz"
    response = _send(proxy, transport, target)
    assert (response.status, response.json()["target"]) == (200, target)


def test_absolute_form_is_judged_by_its_path(proxy: HAProxy) -> None:
    target = "https://localhost/alice%2Fproj.git/HEAD"
    response = h1_request(proxy.https, "GET", target, GIT_AGENT, host="localhost")
    assert _refused(response) == (400, None, SEPARATOR.encode() + b"\n")
