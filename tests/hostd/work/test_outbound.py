"""Webhook deliveries: URL and address tables, then real sockets on 127.0.0.1 (plain and TLS servers on free ports).

DNS names are answered by stub resolvers; everything after the lookup (connect, TLS, HTTP) is the real thing.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hostd.work.outbound import HookURL, HookURLError, Network, parse_url, post, refusal, resolve, sign

LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]
SECRET = "Bearer hunter2-very-secret-token"
BIG = 10 * 1024 * 1024


def stub(*answers: str, calls: list[tuple[Any, ...]] | None = None) -> Callable[..., list[tuple[Any, ...]]]:
    """A resolver answering every name with ``answers``, as getaddrinfo would."""

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append((host, port, args, kwargs))
        family = [socket.AF_INET, socket.AF_INET6]
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    return resolver


# ---------------------------------------------------------------- parse_url

GOOD_URLS = [
    pytest.param("http://example.com", HookURL("http", "example.com", 80, "/"), "http://example.com/", id="bare"),
    pytest.param("HTTPS://Hooks.Example.COM:8443/a/b?x=1&y=%20#frag",
                 HookURL("https", "hooks.example.com", 8443, "/a/b?x=1&y=%20"),
                 "https://hooks.example.com:8443/a/b?x=1&y=%20", id="case-port-query-fragment"),
    pytest.param("http://example.com?x=1", HookURL("http", "example.com", 80, "/?x=1"), "http://example.com/?x=1",
                 id="query-without-path"),
    pytest.param("https://example.com:443/", HookURL("https", "example.com", 443, "/"), "https://example.com/",
                 id="default-port"),
    pytest.param("http://93.184.216.34:8080/hook", HookURL("http", "93.184.216.34", 8080, "/hook"),
                 "http://93.184.216.34:8080/hook", id="ipv4-literal"),
    pytest.param("http://[2606:4700::1]:8080/hook", HookURL("http", "2606:4700::1", 8080, "/hook"),
                 "http://[2606:4700::1]:8080/hook", id="ipv6-literal"),
    pytest.param("https://[FE80::1]", HookURL("https", "fe80::1", 443, "/"), "https://[fe80::1]/", id="ipv6-upper"),
    pytest.param("http://a-b.c0.example:1/", HookURL("http", "a-b.c0.example", 1, "/"), "http://a-b.c0.example:1/",
                 id="port-1"),
    pytest.param("http://example.com:65535/", HookURL("http", "example.com", 65535, "/"),
                 "http://example.com:65535/", id="port-65535"),
]


@pytest.mark.parametrize(("url", "parsed", "text"), GOOD_URLS)
def test_parse_url_accepts(url: str, parsed: HookURL, text: str) -> None:
    assert parse_url(url) == parsed
    assert str(parsed) == text
    assert parse_url(text) == parsed


BAD_URLS = [
    pytest.param("ftp://example.com/", "http:// or https://", id="ftp-scheme"),
    pytest.param("file:///etc/passwd", "http:// or https://", id="file-scheme"),
    pytest.param("example.com/hook", "http:// or https://", id="no-scheme"),
    pytest.param("http:/example.com/", "http:// or https://", id="one-slash"),
    pytest.param("http://user:pw@example.com/", "credentials", id="userinfo"),
    pytest.param("http://user@example.com/", "credentials", id="user-only"),
    pytest.param("http://good.example@127.0.0.1/", "credentials", id="at-confusion"),
    pytest.param("http:///hook", "no host", id="no-host"),
    pytest.param("http://:8080/", "no host", id="port-no-host"),
    pytest.param("http://example.com:0/", "port", id="port-0"),
    pytest.param("http://example.com:70000/", "port", id="port-70000"),
    pytest.param("http://example.com:/", "port", id="port-empty"),
    pytest.param("http://example.com:8o/", "port", id="port-letters"),
    pytest.param("http://example.com:+80/", "port", id="port-plus"),
    pytest.param("http://exa mple.com/", "whitespace", id="space-host"),
    pytest.param("http://example.com/a b", "whitespace", id="space-path"),
    pytest.param(" http://example.com/", "whitespace", id="leading-space"),
    pytest.param("http://example.com/\tx", "whitespace", id="tab"),
    pytest.param("http://example.com/\r\nX-Injected: 1", "control", id="crlf"),
    pytest.param("http://example.com/\x00", "control", id="nul"),
    pytest.param("http://example.com/\x7f", "control", id="del"),
    pytest.param("http://ex\u00e4mple.com/", "non-ASCII", id="non-ascii-host"),
    pytest.param("http://example.com/" + "a" * 2048, "longer than 2048", id="too-long"),
    pytest.param("http://::1/", "port", id="ipv6-unbracketed"),
    pytest.param("http://[::g]/", "IPv6", id="ipv6-malformed"),
    pytest.param("http://[::1/", "IPv6", id="ipv6-unclosed"),
    pytest.param("http://[example.com]/", "IPv6", id="brackets-around-name"),
    pytest.param("http://[fe80::1%25eth0]/", "IPv6", id="ipv6-zone-id"),
    pytest.param("http://[::1]x/", "port", id="after-bracket"),
    pytest.param("http://127.1/", "IPv4", id="short-ipv4"),
    pytest.param("http://0x7f000001/", "IPv4", id="hex-ipv4"),
    pytest.param("http://0177.0.0.1/", "IPv4", id="octal-ipv4"),
    pytest.param("http://2130706433/", "IPv4", id="integer-ipv4"),
    pytest.param("http://256.0.0.1/", "IPv4", id="octet-too-big"),
    pytest.param("http://under_score.example/", "host name", id="underscore"),
    pytest.param("http://-dash.example/", "host name", id="leading-dash"),
    pytest.param("http://example.com./", "host name", id="trailing-dot"),
    pytest.param("http://evil.example\\.good.example/", "host name", id="backslash"),
    pytest.param("http://" + "a" * 64 + ".example/", "host name", id="label-too-long"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_parse_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(HookURLError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and "\r" not in message


@pytest.mark.parametrize("fields", [
    pytest.param(("gopher", "example.com", 70, "/"), id="scheme"),
    pytest.param(("http", "example.com\r\nX-Injected: 1", 80, "/"), id="crlf-host"),
    pytest.param(("http", "example.com", 80, "/a\r\nX-Injected: 1"), id="crlf-target"),
    pytest.param(("http", "example.com", 80, "a"), id="relative-target"),
    pytest.param(("http", "example.com", 0, "/"), id="port-0"),
    pytest.param(("http", "Example.com", 80, "/"), id="uppercase-host"),
])
def test_hook_url_cannot_be_built_invalid(fields: tuple[str, str, int, str]) -> None:
    with pytest.raises(HookURLError):
        HookURL(*fields)


# ---------------------------------------------------------------- refusal

DENIED = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this-network"), ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
    ("100.64.0.1", "shared"), ("100.127.255.255", "shared"), ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"), ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"),
    ("192.0.0.8", "IETF"), ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"), ("198.18.0.1", "benchmarking"), ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "reserved"),
    ("::1", "loopback"), ("::", "unspecified"), ("fd00::1", "private"), ("fc00::1", "private"),
    ("fe80::1", "link-local"), ("fec0::1", "reserved"), ("ff02::1", "multicast"), ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"), ("3fff::1", "documentation"), ("2001:2::1", "benchmarking"),
    ("2001::1", "IETF"), ("100::1", "reserved"), ("64:ff9b:1::1", "reserved"), ("4000::1", "reserved"),
    ("::ffff:0:7f00:1", "reserved"),
    # IPv6 addresses judged by the IPv4 address they carry.
    ("::ffff:127.0.0.1", "127.0.0.1, a loopback"), ("::ffff:10.0.0.1", "10.0.0.1, a private"),
    ("::ffff:169.254.169.254", "169.254.169.254, a link-local"), ("::127.0.0.1", "127.0.0.1, a loopback"),
    ("64:ff9b::7f00:1", "127.0.0.1, a loopback"), ("64:ff9b::a9fe:a9fe", "169.254.169.254, a link-local"),
    ("2002:7f00:1::", "127.0.0.1, a loopback"), ("2002:a00:1::1", "10.0.0.1, a private"),
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1", "2a00:1450:4001:800::200e",
           "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]


@pytest.mark.parametrize(("text", "kind"), [pytest.param(t, k, id=t) for t, k in DENIED])
def test_refusal_denies(text: str, kind: str) -> None:
    address = ipaddress.ip_address(text)
    reason = refusal(address, [])
    assert reason is not None
    assert reason.startswith(f"{address} ")
    assert kind in reason


@pytest.mark.parametrize("text", ALLOWED)
def test_refusal_allows_global_addresses(text: str) -> None:
    assert refusal(ipaddress.ip_address(text), []) is None


def test_refusal_reason_reads_well() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), []) == "127.0.0.1 is a loopback address"
    assert refusal(ipaddress.ip_address("10.0.0.1"), []) == "10.0.0.1 is a private address"


@pytest.mark.parametrize(("text", "allow", "allowed"), [
    ("127.0.0.1", "127.0.0.0/8", True),
    ("127.9.9.9", "127.0.0.0/8", True),
    ("::ffff:127.0.0.1", "127.0.0.0/8", True),  # the address it embeds is allowed
    ("10.0.0.1", "127.0.0.0/8", False),
    ("::1", "127.0.0.0/8", False),
    ("fd00::1", "fd00::/8", True),
    ("169.254.169.254", "10.0.0.0/8", False),
])
def test_allow_nets_let_the_operator_in(text: str, allow: str, allowed: bool) -> None:
    assert (refusal(ipaddress.ip_address(text), [ipaddress.ip_network(allow)]) is None) is allowed


def test_refusal_is_at_least_as_strict_as_the_standard_library() -> None:
    """Whatever ipaddress calls non-global, multicast or reserved is refused; mapped addresses agree with IPv4."""
    rng = random.Random(4)
    for _ in range(20000):
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        v6 = ipaddress.IPv6Address(rng.getrandbits(128) if rng.random() < 0.5 else (0x2 << 124) | rng.getrandbits(124))
        for address in (v4, v6):
            if not address.is_global or address.is_multicast or address.is_reserved or address.is_link_local:
                assert refusal(address, []) is not None, address
        mapped = ipaddress.IPv6Address(0xFFFF << 32 | int(v4))
        assert (refusal(mapped, []) is None) == (refusal(v4, []) is None), v4


# ---------------------------------------------------------------- resolve


def test_resolve_literal_without_lookup() -> None:
    def no_dns(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise AssertionError("an IP literal must not be looked up")

    url = parse_url("http://93.184.216.34/")
    assert resolve(url, [], resolver=no_dns) == [ipaddress.ip_address("93.184.216.34")]
    with pytest.raises(HookURLError, match=r"^refused: 127\.0\.0\.1 is a loopback address$"):
        resolve(parse_url("http://127.0.0.1:8080/"), [], resolver=no_dns)


def test_resolve_returns_every_address_once() -> None:
    calls: list[tuple[Any, ...]] = []
    found = resolve(parse_url("https://hooks.example:8443/"), [],
                    resolver=stub("93.184.216.34", "2606:4700::1", "93.184.216.34", calls=calls))
    assert found == [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:4700::1")]
    assert calls == [("hooks.example", 8443, (), {"type": socket.SOCK_STREAM})]


def test_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(HookURLError) as caught:
        resolve(parse_url("http://innocent.example/"), [], resolver=stub("127.0.0.1"))
    assert str(caught.value) == "refused: 127.0.0.1 is a loopback address (innocent.example resolves to it)"


@pytest.mark.parametrize("answers", [("93.184.216.34", "10.0.0.1"), ("10.0.0.1", "93.184.216.34"),
                                     ("2606:4700::1", "::ffff:169.254.169.254")])
def test_name_mixing_public_and_private_is_refused(answers: tuple[str, str]) -> None:
    with pytest.raises(HookURLError, match="^refused: "):
        resolve(parse_url("http://mixed.example/"), [], resolver=stub(*answers))


def test_allow_nets_apply_to_names() -> None:
    assert resolve(parse_url("http://ci.internal/"), LOOPBACK, resolver=stub("127.0.0.5")) == [
        ipaddress.ip_address("127.0.0.5")]


def test_resolution_failures_are_hook_url_errors() -> None:
    def failing(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    url = parse_url("http://nowhere.example/")
    with pytest.raises(HookURLError, match="^cannot resolve nowhere.example: Name or service not known$"):
        resolve(url, [], resolver=failing)
    with pytest.raises(HookURLError, match="no address"):
        resolve(url, [], resolver=stub())


# ---------------------------------------------------------------- post, against real servers


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(Seen(self.path, dict(self.headers.items()), list(self.headers.items()), body))
        try:
            getattr(self, "reply_" + self.path.partition("?")[0].strip("/").replace("-", "_"))()
        except OSError:
            pass  # the client hung up, as it should for big and slow answers

    def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_ok(self) -> None:
        self.answer(200, b"thanks")

    def reply_redirect(self) -> None:
        self.answer(302, Location=f"http://127.0.0.1:{self.server.server_port}/ok")

    def reply_echo_redirect(self) -> None:
        self.answer(302, Location="http://127.0.0.1/?leak=" + self.headers.get("Authorization", ""))

    def reply_error(self) -> None:
        self.answer(500, b"boom")

    def reply_silent(self) -> None:
        self.server.stop.wait(10)

    def reply_big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        chunk = b"x" * 65536
        for _ in range(BIG // len(chunk)):
            self.wfile.write(chunk)

    def reply_trickle_headers(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self.trickle()

    def reply_trickle_body(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        self.trickle()

    def trickle(self) -> None:
        while not self.server.stop.wait(0.3):
            self.wfile.write(b"a")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # handlers that never answer must not hold up the teardown

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[Seen] = []
        self.stop = threading.Event()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that would accept connections: after a refusal, it must have none waiting."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def no_connection(sock: socket.socket) -> bool:
    return select.select([sock], [], [], 0.2)[0] == []


def test_post_delivers_body_and_headers(server: Server) -> None:
    body = b'{"ref": "refs/heads/main", "after": "0123abc"}'
    signature = sign(b"hook-secret", body)
    headers = {"X-Hostd-Event": "push", "X-Hostd-Signature-256": signature, "Authorization": SECRET}
    response = post(server.url + "/ok?x=1", body, headers, allow=LOOPBACK)
    assert (response.status, response.error, response.body, response.ok) == (200, None, b"thanks", True)
    assert 0 <= response.duration < 2
    [seen] = server.seen
    assert seen.path == "/ok?x=1"
    assert seen.body == body
    assert seen.headers["Host"] == f"127.0.0.1:{server.server_port}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Content-Length"] == str(len(body))
    assert seen.headers["User-Agent"] == "hostd-hookshot/1"
    assert seen.headers["Connection"] == "close"
    assert seen.headers["X-Hostd-Event"] == "push"
    assert seen.headers["X-Hostd-Signature-256"] == signature
    assert seen.headers["Authorization"] == SECRET
    assert len(seen.raw_headers) == 8  # nothing twice, nothing else


def test_post_connects_to_the_checked_address_and_sends_the_name(server: Server) -> None:
    """The name is looked up once, by our resolver (the real one does not know it), and sent as Host."""
    url = f"http://hooks.invalid:{server.server_port}/ok"
    calls: list[tuple[Any, ...]] = []
    response = post(url, b"{}", {"Content-Type": "application/vnd.hostd+json"}, allow=LOOPBACK,
                    resolver=stub("127.0.0.1", calls=calls))
    assert response.ok, response.error
    assert len(calls) == 1
    [seen] = server.seen
    assert seen.headers["Host"] == f"hooks.invalid:{server.server_port}"
    assert [v for k, v in seen.raw_headers if k.lower() == "content-type"] == ["application/vnd.hostd+json"]


def test_post_tries_each_address_in_order(server: Server) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there: refused, then 127.0.0.1 answers.
    url = f"http://hooks.example:{server.server_port}/ok"
    response = post(url, b"{}", {}, allow=LOOPBACK, resolver=stub("127.0.0.2", "127.0.0.1"))
    assert response.ok, response.error


def test_post_accepts_a_parsed_url(server: Server) -> None:
    assert post(parse_url(server.url + "/ok"), b"{}", {}, allow=LOOPBACK).ok


def test_loopback_without_allow_is_refused_before_connecting(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    response = post(f"http://127.0.0.1:{port}/hook", b"{}", {"Authorization": SECRET})
    assert response.status is None and not response.ok
    assert response.error == "refused: 127.0.0.1 is a loopback address"
    assert no_connection(listener)


def test_name_resolving_to_private_is_refused_before_connecting(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    response = post(f"http://rebind.example:{port}/", b"{}", {}, resolver=stub("93.184.216.34", "127.0.0.1"))
    assert response.error == "refused: 127.0.0.1 is a loopback address (rebind.example resolves to it)"
    assert no_connection(listener)


def test_redirect_is_not_followed(server: Server) -> None:
    response = post(server.url + "/redirect", b"{}", {}, allow=LOOPBACK)
    assert response.status == 302 and not response.ok
    assert response.error == f"redirect not followed (302 to http://127.0.0.1:{server.server_port}/ok)"
    time.sleep(0.1)
    assert [seen.path for seen in server.seen] == ["/redirect"]


def test_server_error_is_a_failure(server: Server) -> None:
    response = post(server.url + "/error", b"{}", {}, allow=LOOPBACK)
    assert (response.status, response.error, response.body, response.ok) == (500, "HTTP 500", b"boom", False)


def test_silent_server_times_out(server: Server) -> None:
    response = post(server.url + "/silent", b"{}", {}, allow=LOOPBACK, timeout=1)
    assert response.status is None
    assert response.error == "timed out after 1 s"
    assert 0.9 <= response.duration < 2


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_trickling_server_cannot_extend_the_deadline(server: Server, path: str) -> None:
    started = time.monotonic()
    response = post(server.url + path, b"{}", {}, allow=LOOPBACK, timeout=1)
    assert time.monotonic() - started < 1.5
    assert response.error == "timed out after 1 s" and not response.ok
    assert response.status == (200 if path == "/trickle-body" else None)


def test_big_response_is_cut_at_max_response(server: Server) -> None:
    response = post(server.url + "/big", b"{}", {}, allow=LOOPBACK, max_response=65536)
    assert response.ok, response.error
    assert len(response.body) == 65536
    assert response.duration < 1


def test_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    response = post(f"http://127.0.0.1:{port}/", b"{}", {}, allow=LOOPBACK)
    assert (response.status, response.error) == (None, "connection refused")


@pytest.mark.parametrize(("url", "error"), [
    ("ftp://example.com/", "URL must start with http:// or https://"),
    ("http://user:pw@example.com/", "URL has credentials (user@host): put them in the hook's secret instead"),
])
def test_bad_url_is_an_error_response(url: str, error: str) -> None:
    response = post(url, b"{}", {})
    assert (response.status, response.error, response.body, response.ok) == (None, error, b"", False)


def test_dns_failure_is_an_error_response() -> None:
    def failing(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    response = post("http://nowhere.example/", b"{}", {}, resolver=failing)
    assert (response.status, response.error) == (None, "cannot resolve nowhere.example: Name or service not known")


@pytest.mark.parametrize(("headers", "error"), [
    ({"X-Token": SECRET + "\r\nX-Injected: 1"}, "header X-Token has CR, LF, control or non-ASCII characters"),
    ({"X-Token": SECRET + "\n"}, "header X-Token has CR, LF, control or non-ASCII characters"),
    ({"X-Token": SECRET + "\x00"}, "header X-Token has CR, LF, control or non-ASCII characters"),
    ({"X-Bad\r\nName": SECRET}, "a header name is not an HTTP token"),
    ({"Host": "internal.example"}, "header Host is set by the delivery itself"),
    ({"content-length": "0"}, "header content-length is set by the delivery itself"),
    ({"Transfer-Encoding": "chunked"}, "header Transfer-Encoding is set by the delivery itself"),
])
def test_bad_headers_are_refused_before_connecting(listener: socket.socket, headers: dict[str, str],
                                                   error: str) -> None:
    port = listener.getsockname()[1]
    response = post(f"http://127.0.0.1:{port}/", b"{}", headers, allow=LOOPBACK)
    assert (response.status, response.error) == (None, error)
    assert no_connection(listener)


# ---------------------------------------------------------------- TLS


@dataclass
class Certificate:
    cafile: str
    context: ssl.SSLContext = field(repr=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for "localhost" (its own trust anchor when given as cafile)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory: Path = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return Certificate(str(directory / "cert.pem"), context)


@pytest.fixture
def tls_server(certificate: Certificate) -> Iterator[Server]:
    yield from serve(certificate.context)


def test_https_with_the_right_ca(tls_server: Server, certificate: Certificate) -> None:
    url = f"https://localhost:{tls_server.server_port}/ok"
    response = post(url, b'{"tls": true}', {}, allow=LOOPBACK, resolver=stub("127.0.0.1"), cafile=certificate.cafile)
    assert (response.status, response.error, response.body) == (200, None, b"thanks")
    [seen] = tls_server.seen
    assert seen.headers["Host"] == f"localhost:{tls_server.server_port}" and seen.body == b'{"tls": true}'


def test_https_without_the_ca_fails_verification(tls_server: Server) -> None:
    url = f"https://localhost:{tls_server.server_port}/ok"
    response = post(url, b"{}", {}, allow=LOOPBACK, resolver=stub("127.0.0.1"))
    assert response.status is None
    assert response.error is not None and response.error.startswith("TLS: certificate verify failed")
    assert tls_server.seen == []


def test_https_checks_the_host_name(tls_server: Server, certificate: Certificate) -> None:
    url = f"https://other.example:{tls_server.server_port}/ok"
    response = post(url, b"{}", {}, allow=LOOPBACK, resolver=stub("127.0.0.1"), cafile=certificate.cafile)
    assert response.error is not None and response.error.startswith("TLS: certificate verify failed")
    assert "other.example" in response.error


# ---------------------------------------------------------------- sign and secrets


def test_sign_matches_known_vectors() -> None:
    # RFC 4231, test case 2; and the example in GitHub's documentation of X-Hub-Signature-256.
    expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"Jefe", b"what do ya want for nothing?") == expected
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"It's a Secret to Everybody", b"Hello, World!") == expected


def test_no_secret_in_any_error(server: Server, tls_server: Server, listener: socket.socket) -> None:
    body = b'{"password": "body-secret-value"}'
    headers = {"Authorization": SECRET, "X-Hostd-Signature-256": sign(b"k", body)}
    closed = listener.getsockname()[1]
    listener.close()
    tls = f"https://localhost:{tls_server.server_port}/ok"
    responses = [
        post(f"http://127.0.0.1:{server.server_port}/ok", body, headers),  # refused
        post(f"http://127.0.0.1:{closed}/", body, headers, allow=LOOPBACK),  # connection refused
        post(server.url + "/error", body, headers, allow=LOOPBACK),
        post(server.url + "/echo-redirect", body, headers, allow=LOOPBACK),  # the server echoes the secret
        post(server.url + "/silent", body, headers, allow=LOOPBACK, timeout=0.3),
        post(tls, body, headers, allow=LOOPBACK, resolver=stub("127.0.0.1")),
        post(server.url + "/ok", body, {**headers, "X-Other": SECRET + "\r\n"}, allow=LOOPBACK),
    ]
    errors = [response.error for response in responses]
    assert all(errors), errors
    assert errors[3] == "redirect not followed (302 to http://127.0.0.1/?leak=[redacted])"
    for error in errors:
        assert error is not None
        assert SECRET not in error and "hunter2" not in error and "body-secret" not in error
        assert headers["X-Hostd-Signature-256"] not in error
