"""BalancedThreadWorker under a real gunicorn: a worker with every thread busy leaves new connections to others."""

from __future__ import annotations

import os
import signal
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

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = PROJECT_ROOT / ".venv" / "bin" / "gunicorn"


@dataclass
class Pool:
    process: subprocess.Popen[bytes]
    url: str
    gate: Path

    def get(self, path: str = "/") -> int:
        """The PID of the worker that answered; a worker that queues the request fails it with a timeout."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return int(response.read())

    def hold(self) -> tuple[threading.Thread, int]:
        """Occupy one thread with /hold; returns the thread and the PID of the worker holding it."""
        thread = threading.Thread(target=self.get, args=("/hold",), daemon=True)
        thread.start()
        wait_until("the hold request is served", lambda: any(self.gate.glob("held-*")), 20, interval=0.01)
        (marker,) = self.gate.glob("held-*")
        marker.unlink()
        return thread, int(marker.name.removeprefix("held-"))


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    """Two workers of one thread each, our deploy configuration, on a free loopback port."""
    [port] = free_ports(1)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = dict(os.environ, HOME=str(tmp_path), THREADWORKER_GATE=str(gate), HOSTD_WORKERS="2", HOSTD_THREADS="1")
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(GUNICORN), "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
         "tests.hostd.threadworker_app:app"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pool = Pool(process, f"http://127.0.0.1:{port}", gate)
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
