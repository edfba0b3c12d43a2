"""A gunicorn thread worker that leaves new connections to a sibling while its threads are all busy.

gunicorn's ``gthread`` worker accepts every connection it is woken for, even
when each of its threads is serving a request: the new connection then waits
in the worker's queue while another worker of the pool sits idle (gunicorn
issues #908, #3433).  For a VCS pool that is a real stall: a worker whose
four threads are streaming git/git-sized clones takes a fifth client's
``info/refs`` and holds it for minutes.  It also makes throughput a lottery:
when a client opens several keep-alive connections at once, one worker may
win the race for all of them and serve them on one core (measured with
``wrk -c8`` on the git pool: ~500 req/s then, 1,200-1,500 with any split).

:class:`BalancedThreadWorker` stops listening while every thread is busy and
listens again as soon as one is free; meanwhile the kernel keeps the new
connections in the listening socket's backlog for whichever worker can take
them.  Connections it already holds are served as before.  It is selected in
``deploy/gunicorn.conf.py``::

    worker_class = "hostd.serve.worker.BalancedThreadWorker"

**The side door.** A pool that listens on a unix socket (HAProxy's traffic)
and on a TCP port (see ``deploy/supervisord.conf``) serves the TCP port from
a second, separate set of threads that is never paused.  HAProxy's health
checks go there, so a pool whose request threads are all busy (32 long
clones, or anything else) still answers ``/healthz`` and stays UP, with
HAProxy queueing the requests, instead of being marked DOWN and turning a
busy pool into 503s for everyone.  A worker that listens on one kind of
socket only serves every connection as traffic, as before.

**A read deadline.** HAProxy holds a request until its body, or the first
112 KiB of it, has arrived; past that, it forwards whatever comes and HAProxy
2.6 puts no deadline on a client that stops sending in the middle of a body
(``timeout client`` is disarmed while a pool has the request; see
haproxy.cfg).  So every connection's receives time out after
``read_timeout`` seconds without a byte (``SO_RCVTIMEO``, 60 by default, set
in ``deploy/gunicorn.conf.py``): the read fails, the request ends and its
thread is free again.  Sends are not affected, so a slow reader of a long
clone is never cut off by it.  No real client is silent that long in the
middle of a body (haproxy.cfg, ``timeout client``, says why).

It builds on the event loop of gunicorn 27 (``enqueue_req``,
``finish_request``, ``set_accept_enabled``, ``handle``, ``method_queue``,
``poller``, ``sockets``), which ``pyproject.toml`` pins.
"""

from __future__ import annotations

import selectors
import socket
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """``gthread``, accepting traffic only while at least one thread is free, with a side door."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Requests handed to the traffic threads and not finished: running or queued.
        self.busy = 0
        self.side_pool: ThreadPoolExecutor | None = None
        self._has_traffic_socket = False
        self._enabled = False
        self._listening: set[Any] = set()
        #: Seconds a receive may wait for a byte before the request fails (0: forever).
        self.read_timeout = 60.0

    @property
    def saturated(self) -> bool:
        """Every traffic thread has a request: a new connection would wait here for one."""
        threads: int = self.cfg.threads  # gunicorn's Config is untyped
        return self.busy >= threads

    def init_process(self) -> None:
        # A unix socket carries the traffic; TCP next to it is the side door.
        self._has_traffic_socket = any(_family(listener) == socket.AF_UNIX for listener in self.sockets)
        self.side_pool = ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="side-door")
        super().init_process()  # runs the event loop until the worker stops

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.side_pool is not None:
                self.side_pool.shutdown(wait=False)

    def _side_door(self, address: Any) -> bool:
        """Whether a listener (by its address) is the side door: TCP beside a unix socket."""
        return self._has_traffic_socket and isinstance(address, tuple)

    def enqueue_req(self, conn: Any) -> None:
        _set_receive_timeout(conn.sock, self.read_timeout)
        if self._side_door(conn.server) and self.side_pool is not None:
            future = self.side_pool.submit(self.handle, conn)
            future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))
            return
        self.busy += 1
        super().enqueue_req(conn)
        if self.saturated:
            self._listen()

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        if not self._side_door(conn.server):
            self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # The event loop asks on every pass while ``_accepting`` differs from
        # what it wants, so a saturated worker is asked again next pass.
        self._enabled = enabled
        self._listen()

    def _listen(self) -> None:
        """Listen on the side door while enabled, on the traffic sockets while also not saturated."""
        traffic = self._enabled and not self.saturated
        for listener in self.sockets:
            wanted = self._enabled if self._side_door(listener.getsockname()) else traffic
            if wanted and listener not in self._listening:
                listener.setblocking(False)
                self.poller.register(listener, selectors.EVENT_READ, self.accept)
                self._listening.add(listener)
            elif not wanted and listener in self._listening:
                self.poller.unregister(listener)
                self._listening.discard(listener)
        self._accepting = traffic


def _family(listener: Any) -> int:
    family: int = listener.FAMILY  # gunicorn.sock.BaseSocket subclasses name their family
    return family


def _set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocking ``recv`` on ``sock`` fail after ``seconds`` without data (0: never)."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    except OSError:  # the client is already gone: nothing left to protect
        pass
