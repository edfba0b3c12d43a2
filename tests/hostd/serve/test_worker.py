"""BalancedThreadWorker under a real gunicorn: a worker with every thread busy leaves new connections to others."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.ports import free_ports

PROJECT_ROOT = Path(__file__).resolve().parents[3]
GUNICORN = PROJECT_ROOT / ".venv" / "bin" / "gunicorn"


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, as HAProxy speaks to a pool."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=70)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


@dataclass
class Pool:
    process: subprocess.Popen[bytes]
    url: str
    gate: Path
    #: Where traffic goes when the pool also listens on a unix socket (the TCP port is then its side door).
    unix: Path | None = None

    def get(self, path: str = "/") -> int:
        """The PID of the worker that answered; a worker that queues the request fails it with a timeout."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return int(response.read())

    def get_traffic(self, path: str = "/") -> int:
        """Like :meth:`get`, on the traffic socket (the unix one when there is one)."""
        if self.unix is None:
            return self.get(path)
        connection = _UnixConnection(self.unix)
        try:
            connection.request("GET", path)
            return int(connection.getresponse().read())
        finally:
            connection.close()

    def hold(self) -> tuple[threading.Thread, int]:
        """Occupy one thread with /hold; returns the thread and the PID of the worker holding it."""
        thread = threading.Thread(target=self.get_traffic, args=("/hold",), daemon=True)
        thread.start()
        wait_until("the hold request is served", lambda: any(self.gate.glob("held-*")), 20, interval=0.01)
        (marker,) = self.gate.glob("held-*")
        marker.unlink()
        return thread, int(marker.name.removeprefix("held-"))


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    """Two workers of one thread each, our deploy configuration, on a free loopback port."""
    yield from _pool(tmp_path, unix=False)


@pytest.fixture
def two_door_pool(tmp_path: Path) -> Iterator[Pool]:
    """The same, listening as the stack's pools do: traffic on a unix socket, the TCP port beside it."""
    yield from _pool(tmp_path, unix=True)


@pytest.fixture
def impatient_pool(tmp_path: Path) -> Iterator[Pool]:
    """The same with a read deadline of one second (HOSTD_READ_TIMEOUT)."""
    yield from _pool(tmp_path, unix=False, read_timeout="1")


def _pool(tmp_path: Path, *, unix: bool, read_timeout: str = "60") -> Iterator[Pool]:
    [port] = free_ports(1)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = dict(os.environ, HOME=str(tmp_path), THREADWORKER_GATE=str(gate), HOSTD_WORKERS="2", HOSTD_THREADS="1",
               HOSTD_READ_TIMEOUT=read_timeout)
    log = (tmp_path / "gunicorn.log").open("wb")
    socket_path = tmp_path / "pool.sock"
    binds = ["--bind", f"unix:{socket_path}"] if unix else []
    process = subprocess.Popen(
        [str(GUNICORN), "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"), *binds, "--bind", f"127.0.0.1:{port}",
         "tests.hostd.serve.worker_app:app"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pool = Pool(process, f"http://127.0.0.1:{port}", gate, socket_path if unix else None)
    try:
        deadline = time.monotonic() + 20
        while len(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()) < 2:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.05)
        pool.get()
        yield pool
    finally:
        (gate / "release").touch()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_a_busy_worker_leaves_new_connections_to_an_idle_one(pool: Pool) -> None:
    held, busy = pool.hold()
    answered = {pool.get() for _ in range(20)}
    assert busy not in answered and len(answered) == 1


def test_connections_wait_for_a_free_thread_and_then_all_workers_serve_again(pool: Pool) -> None:
    first, one = pool.hold()
    second, other = pool.hold()
    assert one != other  # the second hold went to the idle worker
    waiting: list[int] = []
    queued = threading.Thread(target=lambda: waiting.append(pool.get()))
    queued.start()  # no free thread anywhere: it waits in the listening socket's backlog
    (pool.gate / "release").touch()
    for thread in (first, second, queued):
        thread.join(20)
    assert waiting and waiting[0] in (one, other)
    (pool.gate / "release").unlink()
    _, again = pool.hold()
    _, still = pool.hold()  # served only if the worker that is not holding listens again
    assert {again, still} == {one, other}


def test_the_side_door_answers_while_every_traffic_thread_is_busy(two_door_pool: Pool) -> None:
    """HAProxy's health checks come in by the TCP port: a pool busy with long requests stays UP."""
    pool = two_door_pool
    _, one = pool.hold()
    _, other = pool.hold()
    assert one != other  # both workers' only traffic thread is taken
    assert pool.get("/healthz") in (one, other)  # answered at once, not after a hold ends
    assert not (pool.gate / "release").exists()
    (pool.gate / "release").touch()
    assert pool.get_traffic() in (one, other)


def test_traffic_still_goes_to_the_worker_with_a_free_thread(two_door_pool: Pool) -> None:
    pool = two_door_pool
    _, busy = pool.hold()
    answered = {pool.get_traffic() for _ in range(10)}
    assert busy not in answered and len(answered) == 1


def test_a_client_that_stops_in_the_middle_of_its_body_loses_its_thread(impatient_pool: Pool) -> None:
    """Past HAProxy's first buffer nothing else bounds a stalled body: the worker's read deadline does."""
    pool = impatient_pool
    port = int(pool.url.rsplit(":", 1)[1])
    stalled = []
    for _ in range(2):  # one per worker thread
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"POST /read HTTP/1.1\r\nHost: pool\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10)
        stalled.append(client)
    try:
        assert pool.get() > 0  # a thread came free: without the deadline this waits for ever
        for client in stalled:
            client.settimeout(10)
            assert client.recv(64).startswith(b"HTTP/1.1 408")
    finally:
        for client in stalled:
            client.close()
