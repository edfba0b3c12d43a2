"""HAProxy's own 503s say which pool is unavailable and when to retry, in words git and hg show.

The real HAProxy on ``haproxy/haproxy.cfg`` (one per test here: servers are
drained and stopped) in front of echo pools. git prints a ``text/plain``
error body (``remote: ...``), Mercurial only the reason phrase
(``abort: HTTP Error 503: ...``): both must carry the reason, and
``Retry-After`` says when. A pool's own 503 keeps its own reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.ops.tls import TlsFiles

from .conftest import HAPROXY_DIR, backend_addresses
from .echo_backend import EchoBackend
from .haproxy_runner import SERVERS, HAProxy
from .http_clients import Headers, Response, h1_request, h2_request

#: A request each pool gets, by the routing rules: git's ref advertisement, an hg wire command, a page.
REQUESTS: dict[str, tuple[str, Headers]] = {
    "git": ("/alice/proj.git/info/refs?service=git-upload-pack", ()),
    "hg": ("/alice/proj?cmd=capabilities", (("Accept", "application/mercurial-0.1"),)),
    "web": ("/alice/proj", ()),
}


def reason(pool: str) -> str:
    return f"The {pool} pool is unavailable (no worker can take the request now); retry in a few seconds."


@pytest.fixture
def echoes() -> Iterator[dict[str, EchoBackend]]:
    backends = {pool: EchoBackend(pool).start() for pool in SERVERS}
    yield backends
    for backend in backends.values():
        backend.stop()


@pytest.fixture
def proxy(tmp_path: Path, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> Iterator[HAProxy]:
    with HAProxy(HAPROXY_DIR, tmp_path / "run", tls, backend_addresses(echoes)) as running:
        yield running


def send(proxy: HAProxy, pool: str, transport: str = "h1", headers: Headers = ()) -> Response:
    target, signature = REQUESTS[pool]
    request = h1_request if transport == "h1" else h2_request
    return request(proxy.https, "GET", target, signature + headers)


def assert_unavailable(response: Response, pool: str, transport: str = "h1") -> None:
    assert (response.status, response.header("x-echo-pool")) == (503, None), response
    assert response.body == (reason(pool) + "\n").encode()
    assert response.header("content-type") == "text/plain"
    assert response.header("retry-after") == "5"
    # The mark of HAProxy's own 503s does not leave HAProxy.
    assert response.header("x-hostd-unavailable") is None
    if transport == "h1":
        assert response.reason == reason(pool)


@pytest.mark.parametrize("pool", sorted(SERVERS))
def test_a_pool_with_every_server_drained_answers_503_with_the_reason(proxy: HAProxy, pool: str) -> None:
    server = f"{pool}/{SERVERS[pool]}"
    assert send(proxy, pool).header("x-echo-pool") == pool
    assert proxy.admin(f"set server {server} state drain").strip() == ""
    for transport in ("h1", "h2"):
        assert_unavailable(send(proxy, pool, transport), pool, transport)
    # Only that pool: the others serve on.
    for other in set(SERVERS) - {pool}:
        assert send(proxy, other).header("x-echo-pool") == other
    proxy.admin(f"set server {server} state ready")
    assert send(proxy, pool).header("x-echo-pool") == pool


def test_a_pool_whose_worker_died_answers_503_with_the_reason(proxy: HAProxy, echoes: dict[str, EchoBackend]) -> None:
    """The requests that find the connection refused (before the check says so) and the ones after it."""
    echoes["hg"].stop()
    for _ in range(2):
        assert_unavailable(send(proxy, "hg"), "hg")


def test_a_pool_s_own_503_keeps_its_own_reason(proxy: HAProxy) -> None:
    response = send(proxy, "git", headers=(("X-Echo-Status", "503"),))
    assert (response.status, response.reason, response.header("x-echo-pool")) == (503, "Echo", "git")
    assert response.header("retry-after") is None
