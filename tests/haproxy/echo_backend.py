"""A tiny HTTP/1.1 server standing in for one gunicorn pool behind HAProxy.

It answers ``/healthz`` with 200 (HAProxy's health check) and every other
request with a JSON document naming its pool and describing what it received:
method, target, headers in order, and the length of the body, read in full
whether it came with Content-Length or chunked. The ``X-Echo-Pool`` response
header names the pool too, so a caller can tell where a request landed
without parsing the body. A request header ``X-Echo-Status: 401`` makes it
answer with that status (for the password-guessing limit); ``X-Echo-Delay:
3`` makes it wait that many seconds (at most 30) before it answers, a pool
computing a large pack.

Usage::

    with EchoBackend("git") as git:
        ...  # point HAProxy at git.address
        git.started  # targets whose headers arrived, in order

The request parser is written out here rather than borrowed from
``http.server`` because that one caps a request at 100 headers, and the
point of some tests is to pass more.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from io import BufferedIOBase
from types import TracebackType
from typing import Self

MAX_LINE = 1 << 20


class _BadRequest(Exception):
    """The client sent something this server cannot parse."""


def _read_line(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadRequest("line too long")
    return line


def _read_chunked(rfile: BufferedIOBase) -> int:
    """Read a chunked body and its trailers; return the body length."""
    total = 0
    while True:
        size_line = _read_line(rfile).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise _BadRequest("bad chunk size") from exc
        if size == 0:
            break
        total += _read_exactly(rfile, size)
        if _read_line(rfile) not in (b"\r\n", b"\n"):
            raise _BadRequest("missing CRLF after chunk")
    while _read_line(rfile) not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return total


def _read_exactly(rfile: BufferedIOBase, size: int) -> int:
    remaining = size
    while remaining:
        data = rfile.read(min(remaining, 1 << 16))
        if not data:
            raise _BadRequest("body ended early")
        remaining -= len(data)
    return size


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            while self._handle_one():
                pass
        except (_BadRequest, ConnectionError):
            return

    def _handle_one(self) -> bool:
        """Serve one request; return whether the connection stays open."""
        request_line = _read_line(self.rfile)
        if not request_line:
            return False
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            raise _BadRequest("bad request line")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        while (line := _read_line(self.rfile)) not in (b"\r\n", b"\n"):
            if not line:
                raise _BadRequest("headers ended early")
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        fields = {name.lower(): value for name, value in headers}
        self.server.record_start(target)

        chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        if chunked:
            body_length = _read_chunked(self.rfile)
        else:
            body_length = _read_exactly(self.rfile, int(fields.get("content-length", "0")))

        status = 200
        if target != "/healthz" and fields.get("x-echo-status", "").isdigit():
            status = int(fields["x-echo-status"])
        if fields.get("x-echo-delay", "").isdigit():
            time.sleep(min(int(fields["x-echo-delay"]), 30))
        report = {
            "pool": self.server.pool,
            "method": method,
            "target": target,
            "version": version,
            "headers": headers,
            "chunked": chunked,
            "body_length": body_length,
        }
        body = json.dumps(report).encode()
        keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        head = (
            f"HTTP/1.1 {status} Echo\r\n"
            f"X-Echo-Pool: {self.server.pool}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)
        self.wfile.flush()
        return keep_alive


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, pool: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pool = pool
        self.started: list[str] = []
        self._lock = threading.Lock()

    def record_start(self, target: str) -> None:
        if target != "/healthz":
            with self._lock:
                self.started.append(target)


class EchoBackend:
    """One echo server on a free 127.0.0.1 port, run in a background thread."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self._server = _Server(pool)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"echo-{pool}", daemon=True
        )

    @property
    def address(self) -> str:
        """``host:port`` to give HAProxy."""
        port = self._server.socket.getsockname()[1]
        return f"127.0.0.1:{port}"

    @property
    def started(self) -> list[str]:
        """Targets of the requests whose headers have arrived so far."""
        return list(self._server.started)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
