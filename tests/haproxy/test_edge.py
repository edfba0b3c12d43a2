"""What the edge does besides routing: redirects, headers, limits, streaming, stats.

Each test drives the real HAProxy on ``haproxy/haproxy.cfg`` (started once for
this module) in front of the echo pools.
"""

from __future__ import annotations

import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.client import HTTPResponse

import pytest

from .echo_backend import EchoBackend
from .haproxy_runner import HAProxy
from .http_clients import Headers, Response, h1_pipeline, h1_request, h2_request

TRANSPORTS = ("h1", "h2")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def send(
    proxy: HAProxy,
    transport: str,
    method: str,
    target: str,
    headers: Headers = (),
    body: bytes | Iterator[bytes] | None = None,
) -> Response:
    request = h1_request if transport == "h1" else h2_request
    return request(proxy.https, method, target, headers, body)


def backend_headers(response: Response) -> dict[str, list[str]]:
    """The headers the pool received, by lowercased name."""
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


# --- Plain HTTP --------------------------------------------------------------


def test_plain_http_get_is_redirected_permanently(proxy: HAProxy) -> None:
    response = h1_request(proxy.http, "GET", "/alice/proj?cmd=log", host=proxy.http.authority)
    assert response.status == 301
    assert response.header("location") == f"{proxy.public_url}/alice/proj?cmd=log"
    assert response.header("x-echo-pool") is None


def test_plain_http_push_is_redirected_keeping_its_method(proxy: HAProxy) -> None:
    response = h1_request(
        proxy.http,
        "POST",
        "/alice/proj.git/git-receive-pack",
        (("Content-Type", "application/x-git-receive-pack-request"),),
        b"0000",
        host=proxy.http.authority,
    )
    assert response.status == 308
    assert response.header("location") == f"{proxy.public_url}/alice/proj.git/git-receive-pack"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8443", "localhost:443"])
def test_redirect_goes_to_the_configured_url_whatever_the_host(proxy: HAProxy, host: str) -> None:
    """A forged Host must not choose where the client (and its credentials) go next."""
    for method, body in (("GET", None), ("POST", b"0000")):
        response = h1_request(proxy.http, method, "/alice/proj.git/info/refs?x=1", (), body, host=host)
        assert response.header("location") == f"{proxy.public_url}/alice/proj.git/info/refs?x=1", method


def test_redirect_without_host_goes_to_the_configured_url(proxy: HAProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10) as sock:
        sock.sendall(b"GET /alice/proj HTTP/1.0\r\n\r\n")
        response = HTTPResponse(sock, method="GET")
        response.begin()
    assert (response.status, response.getheader("location")) == (301, f"{proxy.public_url}/alice/proj")


# --- Stats, metrics, admin socket -------------------------------------------


def test_stats_page(proxy: HAProxy) -> None:
    response = h1_request(proxy.stats, "GET", "/stats")
    assert response.status == 200
    assert b"Statistics Report" in response.body


def test_prometheus_metrics(proxy: HAProxy) -> None:
    response = h1_request(proxy.stats, "GET", "/metrics")
    assert response.status == 200
    for pool in ("git", "hg", "web"):
        assert f'haproxy_backend_status{{proxy="{pool}",state="UP"}} 1'.encode() in response.body


def test_admin_socket_is_private_and_admin(proxy: HAProxy) -> None:
    assert stat.S_IMODE(proxy.admin_socket.stat().st_mode) == 0o600
    assert "Name: HAProxy" in proxy.admin("show info")
    assert "Permission denied" not in proxy.admin("show table https")


# --- Headers the pools rely on ------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_id_is_generated_and_returned(proxy: HAProxy, transport: str) -> None:
    response = send(proxy, transport, "GET", "/alice/proj", (("X-Request-ID", "forged-by-client"),))
    received = backend_headers(response)["x-request-id"]
    assert len(received) == 1 and UUID.match(received[0]), received
    assert response.header("x-request-id") == received[0]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forwarding_headers_are_replaced(proxy: HAProxy, transport: str) -> None:
    forged = (
        ("X-Forwarded-For", "203.0.113.66"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
        ("x-forwarded-port", "80"),
        ("Forwarded", "for=203.0.113.66;proto=http"),
        ("X-Real-IP", "203.0.113.66"),
        ("X-Hostd-Route", "git:forged"),
    )
    received = backend_headers(send(proxy, transport, "GET", "/alice/proj", forged))
    assert received["x-forwarded-for"] == ["127.0.0.1"]
    assert received["x-forwarded-proto"] == ["https"]
    assert received["x-hostd-route"] == ["web:default"]
    for name in ("x-forwarded-host", "x-forwarded-port", "forwarded", "x-real-ip"):
        assert name not in received


def test_hsts_only_on_web_responses(proxy: HAProxy) -> None:
    page = h1_request(proxy.https, "GET", "/alice/proj")
    clone = h1_request(proxy.https, "GET", "/alice/proj.git/info/refs?service=git-upload-pack")
    assert page.header("strict-transport-security") == "max-age=31536000"
    assert clone.header("strict-transport-security") is None


# --- Big requests ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_60k_of_hg_argument_headers_reach_hg(proxy: HAProxy, transport: str) -> None:
    # What Mercurial sends for getbundle on a big repository: arguments cut
    # into ~1 KB X-HgArg-<n> headers (server.maxhttpheaderlen = 1024).
    headers = tuple((f"X-HgArg-{n}", "a" * 1000) for n in range(1, 61))
    headers += (("User-Agent", "mercurial/proto-1.0 (Mercurial 6.3.2)"),)
    response = send(proxy, transport, "GET", "/alice/proj?cmd=getbundle", headers)
    assert response.status == 200, response.body[:200]
    assert response.header("x-echo-pool") == "hg"
    received = backend_headers(response)
    assert all(received[f"x-hgarg-{n}"] == ["a" * 1000] for n in range(1, 61))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_streamed_push_reaches_git_whole(proxy: HAProxy, transport: str) -> None:
    chunks = [bytes([n % 256]) * 65536 for n in range(24)]  # 1.5 MiB, no length
    response = send(
        proxy,
        transport,
        "POST",
        "/alice/proj.git/git-receive-pack",
        (("Content-Type", "application/x-git-receive-pack-request"),),
        iter(chunks),
    )
    assert response.status == 200
    report = response.json()
    assert report["pool"] == "git"
    assert report["body_length"] == 24 * 65536
    assert report["chunked"], "HAProxy should stream it on, not buffer it into a length"


def _paused_body(
    backend: EchoBackend, target: str, seen: threading.Event, wait: float, first: int = 1024
) -> Iterator[bytes]:
    """Send a first chunk of ``first`` bytes, then wait up to ``wait`` s for the pool to see the request."""
    yield b"x" * first
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if target in backend.started:
            seen.set()
            break
        time.sleep(0.02)
    yield b"y" * 1024


# What HAProxy holds before it hands a request on: a buffer (tune.bufsize,
# 128 KiB) minus the rewrite reserve (tune.maxrewrite, 16 KiB).
FIRST_BUFFER = 112 * 1024


@pytest.mark.parametrize(("pool", "push_target"), [
    ("git", "/alice/proj.git/git-receive-pack?stream-test"),
    ("hg", "/alice/proj?cmd=unbundle&stream-test"),
])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pushes_stream_past_the_first_buffer(
    proxy: HAProxy, echo_backends: dict[str, EchoBackend], pool: str, push_target: str, transport: str
) -> None:
    """Once a buffer of the body is in, the pool gets the push while the rest still comes."""
    push_target += f"-{transport}"
    push_seen = threading.Event()
    body = _paused_body(echo_backends[pool], push_target, push_seen, wait=5.0, first=2 * FIRST_BUFFER)
    push = send(proxy, transport, "POST", push_target, (), body)
    assert push.json()["pool"] == pool
    assert push.json()["body_length"] == 2 * FIRST_BUFFER + 1024
    assert push_seen.is_set(), f"the {pool} pool only saw the push once its body was complete"


@pytest.mark.parametrize(("pool", "target"), [
    ("git", "/alice/proj.git/git-receive-pack?buffer-test"),
    ("hg", "/alice/proj?cmd=unbundle&buffer-test"),
    ("web", "/login?buffer-test"),
])
def test_the_start_of_a_body_is_buffered(
    proxy: HAProxy, echo_backends: dict[str, EchoBackend], pool: str, target: str
) -> None:
    """A pool gets no request whose first buffer of body is still on its way."""
    seen = threading.Event()
    body = _paused_body(echo_backends[pool], target, seen, wait=0.5)
    response = h1_request(proxy.https, "POST", target, (), body)
    assert response.json()["pool"] == pool
    assert not seen.is_set(), f"the {pool} pool got the request before its body"


# --- Password guessing ------------------------------------------------------


# haproxy.cfg: a coarse flood guard, "sc_gpc0_rate(0) gt 600" (a minute);
# singlemalt's per-account and per-address throttle is the real brake.
FLOOD_GUARD = 600
WRONG_PASSWORD = (("X-Echo-Status", "401"), ("Authorization", "Basic YWxpY2U6d3Jvbmc="))


def test_an_office_with_failing_users_is_not_locked_out(proxy: HAProxy) -> None:
    """200 wrong passwords from one address in a minute: HAProxy leaves it to singlemalt."""
    try:
        responses = h1_pipeline(proxy.https, ["/alice/proj.git/info/refs"] * 200, WRONG_PASSWORD)
        assert [r.status for r in responses] == [401] * 200
        assert h1_request(proxy.https, "GET", "/alice/proj.git/info/refs").status == 200
    finally:
        proxy.admin("clear table https")


def test_a_flood_of_401s_is_answered_429(proxy: HAProxy) -> None:
    try:
        responses = h1_pipeline(proxy.https, ["/alice/proj.git/info/refs"] * (FLOOD_GUARD + 2),
                                WRONG_PASSWORD)
        assert [r.status for r in responses] == [401] * (FLOOD_GUARD + 1) + [429]
        assert responses[-1].header("retry-after") == "60"
        assert h1_request(proxy.https, "GET", "/").status == 429
    finally:
        proxy.admin("clear table https")
    assert h1_request(proxy.https, "GET", "/").status == 200


def test_failed_sign_ins_through_the_web_form_are_counted_too(proxy: HAProxy) -> None:
    """The form's post carries the password in its body, not in Authorization; its 401s count."""
    failed = (("X-Echo-Status", "401"), ("Content-Length", "0"))
    try:
        responses = h1_pipeline(proxy.https, ["/login"] * (FLOOD_GUARD + 2), failed, method="POST")
        assert [r.status for r in responses] == [401] * (FLOOD_GUARD + 1) + [429]
    finally:
        proxy.admin("clear table https")


def test_challenges_to_requests_without_credentials_are_not_counted(proxy: HAProxy) -> None:
    """git and hg get one 401 per operation before they send credentials."""
    challenge = (("X-Echo-Status", "401"),)
    try:
        statuses = [
            h1_request(proxy.https, "GET", "/alice/proj.git/info/refs", challenge).status
            for _ in range(40)
        ]
        assert statuses == [401] * 40
        assert h1_request(proxy.https, "GET", "/").status == 200
    finally:
        proxy.admin("clear table https")
