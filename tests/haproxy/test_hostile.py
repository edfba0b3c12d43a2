"""Hostile clients at the edge: stalled uploads, and per-address limits.

Each test drives the real HAProxy on ``haproxy/haproxy.cfg`` (started once for
this module) in front of the echo pools. A stalled request must be held by
HAProxy, never handed to a pool (the echo pools record every request whose
headers reach them), and end in HAProxy's 408; one address may hold many
connections and send many requests (an office NAT, a CI fleet), but not
without limit.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPResponse
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from hostd.ops.tls import TlsFiles
from tests.polling import wait_until

from .conftest import HAPROXY_DIR, backend_addresses
from .echo_backend import EchoBackend
from .haproxy_runner import HAProxy
from .http_clients import Headers, ProtocolError, Response, h1_pipeline, h1_request, h2_request

GIT_PUSH = (("Content-Type", "application/x-git-receive-pack-request"),)
HG_PUSH = (("Content-Type", "application/mercurial-0.1"), ("Accept", "application/mercurial-0.1"))
# haproxy.cfg, frontend https: the per-address limits.
SOFT_CONNECTIONS = 100
HARD_CONNECTIONS = 200
CONNECTION_RATE = 600
REQUEST_RATE = 20_000
# The stick table stores IPv4 clients as IPv4-mapped IPv6 addresses.
CLIENT = "::ffff:127.0.0.1"
# Long enough for HAProxy's "timeout http-request" (10 s) to expire first.
STALL_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def clean_tables(proxy: HAProxy) -> Iterator[None]:
    """Every test starts and ends with no counts for 127.0.0.1."""
    _clear(proxy)
    yield
    _clear(proxy)


def _clear(proxy: HAProxy) -> None:
    proxy.admin("clear table per_source")
    proxy.admin("clear table https")


def _counter(proxy: HAProxy, name: str) -> int:
    """A counter of 127.0.0.1 in the per_source table, 0 when it has no entry."""
    match = re.search(rf"\b{name}\(?[0-9]*\)?=(\d+)", proxy.admin("show table per_source"))
    return 0 if match is None else int(match[1])


def _tls(proxy: HAProxy, alpn: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(proxy.tls.ca_cert))
    context.set_alpn_protocols([alpn])
    sock = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=STALL_TIMEOUT)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


# --- Stalled uploads ---------------------------------------------------------


def stalled_h1(proxy: HAProxy, target: str, headers: Headers) -> int:
    """Send a POST's headers and 1 KiB of its announced 1 MiB body, then nothing; return the status."""
    head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {1 << 20}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    with _tls(proxy, "http/1.1") as sock:
        sock.sendall(head.encode() + b"x" * 1024)
        response = HTTPResponse(sock, method="POST")
        response.begin()
        return response.status


def stalled_h1_chunked(proxy: HAProxy, target: str, headers: Headers) -> int:
    """A chunked POST: one 1 KiB chunk, then nothing; return the status."""
    head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    with _tls(proxy, "http/1.1") as sock:
        sock.sendall(head.encode() + b"400\r\n" + b"x" * 1024 + b"\r\n")
        response = HTTPResponse(sock, method="POST")
        response.begin()
        return response.status


def stalled_h2(proxy: HAProxy, target: str, headers: Headers) -> int:
    """The same over HTTP/2: HEADERS without END_STREAM, one DATA frame, then nothing."""
    with _tls(proxy, "h2") as sock:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        request = [(":method", "POST"), (":scheme", "https"), (":authority", "127.0.0.1"),
                   (":path", target), ("content-length", str(1 << 20))]
        conn.send_headers(1, request + [(name.lower(), value) for name, value in headers])
        conn.send_data(1, b"x" * 1024)
        sock.sendall(conn.data_to_send())
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
                if isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise ProtocolError(f"no response, {event!r}")
            sock.sendall(conn.data_to_send())
    raise ProtocolError("connection closed without a response")


STALLS: dict[str, tuple[Callable[[HAProxy, str, Headers], int], str, str, Headers]] = {
    "git-push-h1": (stalled_h1, "git", "/alice/proj.git/git-receive-pack?stall-h1", GIT_PUSH),
    "git-push-h1-chunked": (stalled_h1_chunked, "git", "/alice/proj.git/git-receive-pack?stall-chunked",
                            GIT_PUSH),
    "git-push-h2": (stalled_h2, "git", "/alice/proj.git/git-receive-pack?stall-h2", GIT_PUSH),
    "hg-unbundle-h1": (stalled_h1, "hg", "/alice/proj?cmd=unbundle&stall-h1", HG_PUSH),
    "hg-unbundle-h2": (stalled_h2, "hg", "/alice/proj?cmd=unbundle&stall-h2", HG_PUSH),
    "page-form-h1": (stalled_h1, "web", "/login?stall-h1", ()),
}


def test_stalled_uploads_never_reach_a_pool_and_get_408(
    proxy: HAProxy, echo_backends: dict[str, EchoBackend]
) -> None:
    # All at once: each waits out HAProxy's "timeout http-request".
    with ThreadPoolExecutor(len(STALLS)) as pool:
        futures = {name: pool.submit(send, proxy, target, headers)
                   for name, (send, _, target, headers) in STALLS.items()}
        statuses = {name: future.result() for name, future in futures.items()}
    assert statuses == dict.fromkeys(STALLS, 408)
    for name, (_, backend, target, _) in STALLS.items():
        assert target not in echo_backends[backend].started, f"{name} reached the {backend} pool"


def test_expect_100_continue_is_answered_by_haproxy(
    proxy: HAProxy, echo_backends: dict[str, EchoBackend]
) -> None:
    target = "/alice/proj.git/git-receive-pack?expect-test"
    head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            "Content-Type: application/x-git-receive-pack-request\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n")
    with _tls(proxy, "http/1.1") as sock:
        sock.sendall(head.encode())
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 100")
        assert stream.readline() == b"\r\n"
        assert target not in echo_backends["git"].started
        sock.sendall(b"0000\n")
        response = HTTPResponse(sock, method="POST")
        response.begin()
        report = json.loads(response.read())
    assert (response.status, report["pool"], report["body_length"]) == (200, "git", 5)


def test_an_http2_connection_carries_at_most_16_streams(proxy: HAProxy) -> None:
    """The connection limit bounds connections; this bounds the stalled requests in each."""
    with _tls(proxy, "h2") as sock:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        settings: dict[int, int] = {}
        while not settings:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings = {key: value.new_value for key, value in event.changed_settings.items()}
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 16


# --- Per-address limits ---------------------------------------------------------


def _hold(proxy: HAProxy, held: list[socket.socket], total: int) -> None:
    """Hold ``total`` open TCP connections (no TLS, no request) and wait until HAProxy counts them."""
    while len(held) < total:
        held.append(socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5))
    wait_until(f"HAProxy counts {total} connections",
               lambda: _counter(proxy, "conn_cur") == total, timeout=10)


def _refused_at_accept(proxy: HAProxy) -> bool:
    try:
        h1_request(proxy.https, "GET", "/")
    except OSError:
        return True
    return False


def test_one_address_gets_429_then_is_refused_beyond_its_connection_limits(proxy: HAProxy) -> None:
    held: list[socket.socket] = []
    try:
        # An office behind NAT: 99 connections open, the 100th still works.
        _hold(proxy, held, SOFT_CONNECTIONS - 1)
        assert h1_request(proxy.https, "GET", "/").status == 200
        assert h2_request(proxy.https, "GET", "/").status == 200

        _hold(proxy, held, SOFT_CONNECTIONS)
        for response in (h1_request(proxy.https, "GET", "/alice/proj.git/info/refs"),
                         h2_request(proxy.https, "GET", "/alice/proj.git/info/refs")):
            assert (response.status, response.header("retry-after")) == (429, "10")
            assert response.body == b"Too many connections from your address; close some and retry.\n"
            assert response.header("x-echo-pool") is None

        # Beyond the hard limit the connection is closed at once, before TLS.
        _hold(proxy, held, HARD_CONNECTIONS)
        assert _refused_at_accept(proxy)
    finally:
        for sock in held:
            sock.close()
    wait_until("the address is served again", lambda: h1_request(proxy.https, "GET", "/").status == 200,
               timeout=10)


def _set_rate(proxy: HAProxy, counter: str, value: int) -> None:
    """Put 127.0.0.1's rate counter at ``value``: more than a loop on a shared machine makes in 10 s.

    Rates are sliding estimates (this period's count plus a decaying share of
    the last one's), so tests stay far from the limit on either side.
    """
    assert h1_request(proxy.https, "GET", "/").status == 200  # the entry exists
    proxy.admin(f"set table per_source key {CLIENT} data.{counter} {value}")


def test_connection_rate_is_limited_at_accept(proxy: HAProxy) -> None:
    # A real burst of new connections is counted...
    for _ in range(50):
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5).close()
    wait_until("HAProxy counts the connections", lambda: _counter(proxy, "conn_rate") >= 40, timeout=10)
    # ...half the limit is served, twice the limit is not.
    _set_rate(proxy, "conn_rate", CONNECTION_RATE // 2)
    assert h1_request(proxy.https, "GET", "/").status == 200
    _set_rate(proxy, "conn_rate", CONNECTION_RATE * 2)
    assert _refused_at_accept(proxy)


def test_request_rate_is_limited_with_429(proxy: HAProxy) -> None:
    responses = h1_pipeline(proxy.https, ["/?rate-test"] * 20)
    assert [r.status for r in responses] == [200] * 20
    assert _counter(proxy, "http_req_rate") >= 15
    _set_rate(proxy, "http_req_rate", REQUEST_RATE // 2)
    assert h1_request(proxy.https, "GET", "/").status == 200
    _set_rate(proxy, "http_req_rate", REQUEST_RATE * 2)
    responses = h1_pipeline(proxy.https, ["/?rate-test"] * 3)
    assert [r.status for r in responses] == [429] * 3
    refused = responses[0]
    assert refused.body == b"Too many requests from your address; retry later.\n"
    assert refused.header("retry-after") == "10"


def test_a_ci_fleet_behind_one_address_is_not_limited(proxy: HAProxy) -> None:
    """32 clones at once, each a few requests, all from 127.0.0.1."""

    def clone(n: int) -> list[int]:
        refs = h1_request(proxy.https, "GET", f"/ci/r{n}.git/info/refs?service=git-upload-pack",
                          (("X-Echo-Delay", "1"),))
        pack = h2_request(proxy.https, "POST", f"/ci/r{n}.git/git-upload-pack",
                          (("Content-Type", "application/x-git-upload-pack-request"),), b"0000")
        return [refs.status, pack.status]

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(clone, range(32)))
    assert statuses == [[200, 200]] * 32


# --- What "timeout client" does and does not cover ------------------------------------


def _copy_with_short_timeouts(tmp_path: Path) -> Path:
    """haproxy/ with "timeout client 1s", and "timeout server 4s" on backend git."""
    copy = tmp_path / "haproxy"
    shutil.copytree(HAPROXY_DIR, copy)
    config = copy / "haproxy.cfg"
    text = config.read_text()
    client, server = "    timeout client 60s\n", "backend git\n"
    assert client in text and server in text and "    timeout server 1h\n" in text
    text = text.replace(client, "    timeout client 1s\n")
    head, _, tail = text.partition(server)
    config.write_text(head + server + tail.replace("    timeout server 1h\n", "    timeout server 4s\n", 1))
    return copy


def test_what_timeout_client_times(
    tmp_path: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend]
) -> None:
    """Once a request went to a pool, "timeout client" no longer runs; "timeout server" does.

    With "timeout client 1s": a pool that answers after 2 s still gets its
    answer through (a clone computing its pack), and a push that stops after
    its first buffers is ended by the git backend's "timeout server" (504),
    not by "timeout client" (408, or a closed connection).
    """
    copy = _copy_with_short_timeouts(tmp_path)
    slow = (("X-Echo-Delay", "2"), ("Content-Type", "application/x-git-upload-pack-request"))
    stall_target = "/alice/proj.git/git-receive-pack?stall-past-first-buffer"
    with HAProxy(copy, tmp_path / "run", tls, backend_addresses(echo_backends)) as short:
        responses: list[Response] = [
            h1_request(short.https, "POST", "/alice/proj.git/git-upload-pack", slow, b"0000"),
            h2_request(short.https, "POST", "/alice/proj.git/git-upload-pack", slow, b"0000"),
        ]
        head = (f"POST {stall_target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {1 << 22}\r\n"
                "Content-Type: application/x-git-receive-pack-request\r\n\r\n")
        with _tls(short, "http/1.1") as sock:
            sock.sendall(head.encode() + b"x" * (300 * 1024))
            stalled = HTTPResponse(sock, method="POST")
            stalled.begin()
    assert [(r.status, r.header("x-echo-pool")) for r in responses] == [(200, "git")] * 2
    assert stall_target in echo_backends["git"].started
    assert stalled.status == 504
