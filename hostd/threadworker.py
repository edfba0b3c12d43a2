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

    worker_class = "hostd.threadworker.BalancedThreadWorker"

It builds on the event loop of gunicorn 27 (``enqueue_req``,
``finish_request``, ``set_accept_enabled``), which ``pyproject.toml`` pins.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """``gthread``, accepting only while at least one thread is free."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Requests handed to the thread pool and not finished: running or queued.
        self.busy = 0

    @property
    def saturated(self) -> bool:
        """Every thread has a request: a new connection would wait here for one."""
        threads: int = self.cfg.threads  # gunicorn's Config is untyped
        return self.busy >= threads

    def enqueue_req(self, conn: Any) -> None:
        self.busy += 1
        super().enqueue_req(conn)
        if self.saturated:
            super().set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # The event loop asks on every pass; a free thread is the extra condition.
        super().set_accept_enabled(enabled and not self.saturated)
