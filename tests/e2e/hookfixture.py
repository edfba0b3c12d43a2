"""A webhook receiver on loopback, and a stack whose queue pool may deliver to it.

:class:`Receiver` is a real HTTP server in a thread that records every POST
(headers, body, time) and answers as a test tells it: fail the first N
calls, hold calls until released, take a while, or redirect. A stack made
by :func:`hook_stack` allows loopback hook URLs (``HOSTD_HOOK_ALLOW_NETS``,
as an operator would for a CI server on the private network) and beats and
retries fast, so that what takes minutes in production takes seconds here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.stackfixture import Stack, start_stack, stop_stack
from tests.polling import wait_until

#: The queue pool's timings in these stacks: a heartbeat a second, a worker
#: silent for 4 s counts as dead, retries after 0.2 s doubling to 1 s.
FAST_QUEUE = {
    "HOSTD_HOOK_ALLOW_NETS": "127.0.0.0/8",
    "HOSTD_QUEUE_HEARTBEAT": "1",
    "HOSTD_QUEUE_STALLED_AFTER": "4",
    "HOSTD_HOOK_RETRY_BASE": "0.2",
    "HOSTD_HOOK_RETRY_MAX": "1",
}


@dataclass(frozen=True)
class Call:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def delivery(self) -> str:
        return self.headers["X-Hostd-Delivery"]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``failures``, waits ``delay`` s before answering,
    holds calls while ``hold`` is set, and with ``redirect`` answers 302 to it."""

    url: str = ""
    failures: int = 0
    delay: float = 0.0
    redirect: str | None = None
    hold: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    calls: list[Call] = field(default_factory=list)
    #: Requests that arrived, including those still held.
    arrivals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self) -> list[Call]:
        with self.lock:
            return list(self.calls)

    def deliveries(self) -> set[str]:
        return {call.delivery for call in self.answered()}

    def wait_for(self, count: int, timeout: float = 60) -> float:
        """Seconds until at least ``count`` calls arrived."""
        return wait_until(f"{count} calls to the receiver (got {len(self.calls)})",
                          lambda: len(self.calls) >= count, timeout=timeout)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.arrivals += 1
                if receiver.hold.is_set():
                    receiver.released.wait(120)
                with receiver.lock:
                    receiver.calls.append(Call(dict(self.headers.items()), body, time.time()))
                    failing = len(receiver.calls) <= receiver.failures
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect)
                else:
                    self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                del args
        return Handler

    def serve(self) -> Iterator[Receiver]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.released.set()
            server.shutdown()
            server.server_close()


def hook_stack(root: Path, **env: str) -> Iterator[Stack]:
    """A stack whose hooks may reach loopback, with the fast queue timings (``env`` overrides them)."""
    running = start_stack(root, **{**FAST_QUEUE, **env})
    try:
        yield running
    finally:
        stop_stack(running)

