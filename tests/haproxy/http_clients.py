"""Minimal HTTP/1.1 and HTTP/2 clients that send a request exactly as written.

General-purpose clients normalise what the route table needs to vary: they
upper-case methods, add their own User-Agent and Accept, refuse absolute-form
request lines. These send only what the caller gives them (plus Host, or
``:authority`` over HTTP/2), one request per connection, and return the whole
response.

A body is either ``bytes`` (sent with Content-Length) or an iterable of chunks
(HTTP/1.1 chunked encoding, or HTTP/2 DATA frames without a length), so a
test can pause mid-body by making the iterable wait.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events

Headers = tuple[tuple[str, str], ...]
Body = bytes | Iterable[bytes] | None

TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect; ``ca_file`` None means plain TCP."""

    host: str
    port: int
    ca_file: Path | None = None

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, headers in order (names lowercased), body."""

    status: int
    headers: Headers
    body: bytes
    #: The status line's reason phrase (HTTP/1.1 only; HTTP/2 has none), what Mercurial shows.
    reason: str = ""

    def header(self, name: str) -> str | None:
        """The last value of a header, or None."""
        values = [value for key, value in self.headers if key == name.lower()]
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class ProtocolError(Exception):
    """The server broke the connection or the protocol."""


def _connect(endpoint: Endpoint, alpn: str | None) -> socket.socket:
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=TIMEOUT)
    if endpoint.ca_file is None:
        return sock
    context = ssl.create_default_context(cafile=str(endpoint.ca_file))
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    try:
        return context.wrap_socket(sock, server_hostname=endpoint.host)
    except BaseException:
        sock.close()
        raise


def h1_request(
    endpoint: Endpoint,
    method: str,
    target: str,
    headers: Headers = (),
    body: Body = None,
    *,
    host: str | None = None,
) -> Response:
    """Send one HTTP/1.1 request (``Connection: close``) and read the response."""
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host or endpoint.authority}")
    lines += [f"{name}: {value}" for name, value in headers]
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    with _connect(endpoint, "http/1.1") as sock:
        sock.sendall(head)
        if isinstance(body, bytes):
            sock.sendall(body)
        elif body is not None:
            for chunk in body:
                if chunk:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        response = HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return Response(
            status=response.status,
            headers=tuple((name.lower(), value) for name, value in response.getheaders()),
            body=data,
            reason=response.reason,
        )


def h1_pipeline(
    endpoint: Endpoint, targets: Iterable[str], headers: Headers = (), method: str = "GET"
) -> list[Response]:
    """Send every target (GET, or ``method`` without a body) on one keep-alive HTTP/1.1 connection, all at once.

    Returns the responses in order, up to the first one after which the
    server closed the connection (the last request asks it to): many
    requests in a fraction of the time of one connection each.
    """
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    targets = list(targets)
    # The last request closes the connection, so the last response ends it.
    requests = "".join(
        f"{method} {target} HTTP/1.1\r\nHost: {endpoint.authority}\r\n{head}"
        + ("Connection: close\r\n" if n == len(targets) - 1 else "") + "\r\n"
        for n, target in enumerate(targets)
    )
    responses = []
    with _connect(endpoint, "http/1.1") as sock:
        sock.sendall(requests.encode("latin-1"))
        stream = sock.makefile("rb")
        while status_line := stream.readline():
            fields: list[tuple[str, str]] = []
            while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                fields.append((name.strip().lower(), value.strip()))
            length = int(dict(fields).get("content-length", "0"))
            responses.append(Response(int(status_line.split()[1]), tuple(fields), stream.read(length)))
            if dict(fields).get("connection", "").lower() == "close":
                break
    return responses


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _H2Exchange:
    """One request on a fresh HTTP/2 connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.stream_id = 0
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.ended = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def receive(self) -> None:
        """Read once from the socket and handle what arrived."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise ProtocolError("connection closed before the response ended")
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.stream_id:
            for raw_name, raw_value in event.headers or ():
                name, value = _text(raw_name), _text(raw_value)
                if name == ":status":
                    self.status = int(value)
                else:
                    self.headers.append((name, value))
        elif isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
            self.body += event.data or b""
            self.conn.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.stream_id:
            self.ended = True
        elif isinstance(event, h2.events.StreamReset) and event.stream_id == self.stream_id:
            raise ProtocolError(f"stream reset by the server (error {event.error_code!r})")
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise ProtocolError(f"connection terminated (error {event.error_code!r})")

    def send_data(self, chunk: bytes) -> None:
        """Send one chunk as DATA frames, waiting for flow-control credit."""
        view = memoryview(chunk)
        while view and not self.ended:
            window = min(
                self.conn.local_flow_control_window(self.stream_id),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                self.receive()
                continue
            self.conn.send_data(self.stream_id, view[:window].tobytes())
            self.flush()
            view = view[window:]


def h2_request(
    endpoint: Endpoint,
    method: str,
    target: str,
    headers: Headers = (),
    body: Body = None,
    *,
    authority: str | None = None,
) -> Response:
    """Send one request on a new HTTP/2 connection (TLS, ALPN h2)."""
    path = target
    if not target.startswith("/"):
        scheme_rest = target.split("://", 1)[1]
        authority = authority or scheme_rest.split("/", 1)[0]
        path = "/" + scheme_rest.split("/", 1)[1]
    fields = [(name.lower(), value) for name, value in headers]
    for name, value in fields:
        if name == "host":
            authority = value
    request = [
        (":method", method),
        (":scheme", "https"),
        (":authority", authority or endpoint.authority),
        (":path", path),
    ] + [(name, value) for name, value in fields if name != "host"]
    if isinstance(body, bytes):
        request.append(("content-length", str(len(body))))

    with _connect(endpoint, "h2") as sock:
        if getattr(sock, "selected_alpn_protocol", lambda: None)() != "h2":
            raise ProtocolError("the server did not negotiate h2")
        exchange = _H2Exchange(sock)
        exchange.conn.initiate_connection()
        exchange.stream_id = exchange.conn.get_next_available_stream_id()
        exchange.conn.send_headers(exchange.stream_id, request, end_stream=body is None)
        exchange.flush()
        if body is not None:
            for chunk in [body] if isinstance(body, bytes) else body:
                exchange.send_data(chunk)
            if not exchange.ended:
                exchange.conn.end_stream(exchange.stream_id)
                exchange.flush()
        while not exchange.ended:
            exchange.receive()
        return Response(
            status=exchange.status, headers=tuple(exchange.headers), body=bytes(exchange.body)
        )
