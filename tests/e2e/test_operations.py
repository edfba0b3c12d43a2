"""Runtime operations on the real stack: drain, add, kill, reload, graph.

A second git worker is a real gunicorn started here with the stack's own
environment and added with ``hostd pool add``. Clones that must still be
running when something happens (a drain, a reload) go through
:class:`ThrottleProxy`, an HTTP CONNECT proxy that hands the server's bytes
to git at a fixed rate, so a 10 MB clone takes ~10 s on any machine instead
of racing the test. Which worker served what is read from HAProxy's own
per-server session counters (and the added worker's access log).

Every test leaves the stack as it found it: git1 ready, no git2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostd.ops import pooladmin
from hostd.ops import stack as stackmod
from hostd.settings import PROJECT_ROOT
from tests.e2e.stackfixture import VENV_BIN, Stack
from tests.polling import wait_until
from tests.ports import free_ports

OWNER = "opal"
PASSWORD = "opal's operating password"
BIG_BYTES = 10 * 1024 * 1024
# Bytes/s per proxied connection: the big clone takes ~10 s, and HAProxy's
# session on the worker lasts ~7 s of it (the rest sits in socket buffers).
RATE = 1024 * 1024


# --- Helpers -------------------------------------------------------------------

class ThrottleProxy:
    """An HTTP CONNECT proxy to one address that relays the server's bytes at
    ``rate`` bytes/s per connection and counts them, on 127.0.0.1."""

    def __init__(self, target: tuple[str, int], rate: int) -> None:
        self.target = target
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.relayed: list[int] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def streaming(self, at_least: int) -> int:
        """How many connections have relayed ``at_least`` bytes so far."""
        with self.lock:
            return sum(1 for count in self.relayed if count >= at_least)

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                head += chunk
            host, port = self.target
            if not head.startswith(f"CONNECT {host}:{port} ".encode()):
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            with socket.socket() as upstream:
                # A small receive window: otherwise the kernel buffers megabytes
                # of the pack and HAProxy's session ends long before the clone.
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
                upstream.settimeout(60)
                upstream.connect(self.target)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                with self.lock:
                    index = len(self.relayed)
                    self.relayed.append(0)
                upward = threading.Thread(target=self._pump, args=(conn, upstream, None), daemon=True)
                upward.start()
                self._pump(upstream, conn, index)
                upward.join(timeout=60)

    def _pump(self, source: socket.socket, sink: socket.socket, index: int | None) -> None:
        while True:
            try:
                data = source.recv(16384)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
            if index is not None:
                with self.lock:
                    self.relayed[index] += len(data)
                time.sleep(len(data) / self.rate)
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@dataclass
class Worker:
    """A git worker this module started: a gunicorn master in its own session."""

    process: subprocess.Popen[bytes]
    address: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group: the master and its workers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_git_worker(stack: Stack, directory: Path, name: str) -> Worker:
    """A git pool process like supervisord's, on a free port; waits for /healthz."""
    [port] = free_ports(1)
    address = f"127.0.0.1:{port}"
    env = stackmod.environment(stack.settings)
    # gunicorn >= 23 opens a control socket under $HOME; keep ours apart from the stack's.
    directory.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(directory)
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"),
             "--bind", f"unix:{pooladmin.worker_socket(stack.settings, 'git', name)}",
             "--bind", address, "--name", f"hostd-{name}", "hostd.serve.wsgi:git_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    worker = Worker(process, address, log)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=2) as response:
                if response.status == 200:
                    return worker
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise AssertionError(f"{name} did not come up:\n{log.read_text()}")
        time.sleep(0.1)


def git_server(stack: Stack, name: str) -> pooladmin.Server:
    return pooladmin.server(stack.settings, "git", name)


class Background:
    """Run a function in a thread and keep its exception for :meth:`result`."""

    def __init__(self, func: Callable[[], object]) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                func()
            except BaseException as error:  # reported by result()
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error


# --- Fixtures ------------------------------------------------------------------

@dataclass(frozen=True)
class Repos:
    small: str
    big: str
    big_head: str


@pytest.fixture(scope="module")
def repos(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Repos:
    stack.forget_failed_logins()
    stack.add_user(OWNER, PASSWORD)
    root = tmp_path_factory.mktemp("seed")
    stack.seed_git(f"{OWNER}/small", root / "small", {"README": b"small\n"})
    big = {f"blob{i}.bin": os.urandom(BIG_BYTES // 4) for i in range(4)}
    head = stack.seed_git(f"{OWNER}/big", root / "big", big)
    return Repos(stack.url(f"{OWNER}/small.git", OWNER, PASSWORD), stack.url(f"{OWNER}/big.git", OWNER, PASSWORD), head)


@pytest.fixture
def proxy(stack: Stack) -> Iterator[ThrottleProxy]:
    running = ThrottleProxy((stack.settings.bind, stack.settings.ports.https), RATE)
    yield running
    running.close()


@pytest.fixture
def clean_pool(stack: Stack) -> Iterator[None]:
    """Whatever a test did, leave git1 ready and no other git server behind."""
    yield
    for server in pooladmin.servers(stack.settings, "git"):
        if server.name == "git1":
            pooladmin.ready(stack.settings, "git", "git1")
        else:
            pooladmin.remove(stack.settings, "git", server.name, timeout=30)


def clone(stack: Stack, url: str, dest: Path, proxy: ThrottleProxy | None = None) -> Path:
    options = ["-c", f"http.proxy={proxy.url}"] if proxy else []
    stack.clients.git(*options, "clone", "-q", url, str(dest), timeout=120)
    return dest


def cloned_big(stack: Stack, repos: Repos, dest: Path, proxy: ThrottleProxy) -> Callable[[], None]:
    def run() -> None:
        clone(stack, repos.big, dest, proxy)
        head = stack.clients.git("rev-parse", "HEAD", cwd=dest).stdout.strip()
        assert head == repos.big_head
        assert sum(f.stat().st_size for f in dest.glob("blob*.bin")) == BIG_BYTES
    return run


# --- Tests -------------------------------------------------------------------------

def test_added_worker_takes_clones_drain_finishes_in_flight_and_a_killed_worker_goes_down(
        stack: Stack, repos: Repos, proxy: ThrottleProxy, clean_pool: None, tmp_path: Path) -> None:
    git2 = start_git_worker(stack, tmp_path / "git2", "git2")
    try:
        added = stack.hostd("pool", "add", "git", "git2", git2.address).stdout
        assert added.startswith(f"git/git2\tUP\t0 now\t0 total\tmaxconn {git_server(stack, 'git1').maxconn}\t")
        # Traffic over its unix socket (so it believes HAProxy's X-Forwarded-For), checks on its TCP port.
        assert (git_server(stack, "git2").address, git_server(stack, "git2").check_address) == ("unix", git2.address)

        # leastconn spreads sequential clones over both workers.
        for i in range(4):
            clone(stack, repos.small, tmp_path / f"spread{i}")
        assert git_server(stack, "git2").total_sessions > 0
        assert "git-upload-pack" in git2.log.read_text()

        # A slow clone on git1 (git2 drained meanwhile so it cannot take it)...
        stack.hostd("pool", "drain", "git", "git2")
        slow = Background(cloned_big(stack, repos, tmp_path / "slow", proxy))
        wait_until("the pack streams from git1", lambda: proxy.streaming(256 << 10) == 1, timeout=30)
        assert git_server(stack, "git1").sessions >= 1
        # ...is in flight when git1 is drained.
        stack.hostd("pool", "ready", "git", "git2")
        drained = stack.hostd("pool", "drain", "git", "git1").stdout
        assert drained.startswith("git/git1 drained")
        listing = stack.hostd("pool", "list", "git").stdout
        assert "git/git1\tDRAIN\t1 now\t" in listing and "git/git2\tUP\t" in listing

        git1_before, git2_before = git_server(stack, "git1").total_sessions, git_server(stack, "git2").total_sessions
        for i in range(3):
            clone(stack, repos.small, tmp_path / f"after-drain{i}")
        assert git_server(stack, "git1").total_sessions == git1_before, "a drained worker got a new session"
        assert git_server(stack, "git2").total_sessions >= git2_before + 3
        assert proxy.streaming(BIG_BYTES) == 0, "the slow clone should still be running"
        slow.result(timeout=60)  # the in-flight clone completed, intact
        stack.hostd("pool", "ready", "git", "git1")

        # Kill git2 outright: HAProxy retries the connection elsewhere at once
        # and marks git2 down after two failed checks.
        git2.kill()
        clone(stack, repos.small, tmp_path / "right-after-kill")
        took = wait_until("git2 is marked DOWN", lambda: git_server(stack, "git2").state == "DOWN", timeout=15)
        assert took < 10
        git1_before = git_server(stack, "git1").total_sessions
        for i in range(3):
            clone(stack, repos.small, tmp_path / f"after-kill{i}")
        assert git_server(stack, "git1").total_sessions >= git1_before + 3

        assert stack.hostd("pool", "remove", "git", "git2").stdout.strip() == "git/git2 removed"
        assert [s.name for s in pooladmin.servers(stack.settings, "git")] == ["git1"]
    finally:
        git2.stop()


def test_reload_during_three_clones_loses_none(stack: Stack, repos: Repos, proxy: ThrottleProxy,
                                               tmp_path: Path) -> None:
    clones = [Background(cloned_big(stack, repos, tmp_path / f"clone{i}", proxy)) for i in range(3)]
    wait_until("three packs stream", lambda: proxy.streaming(256 << 10) == 3, timeout=30)
    old_worker = pooladmin.worker_pid(stack.settings)
    stackmod.reload_haproxy(stack.settings)  # returns once the new worker answers
    assert pooladmin.worker_pid(stack.settings) != old_worker
    assert proxy.streaming(BIG_BYTES) == 0, "the clones should still be running across the reload"
    for running in clones:
        running.result(timeout=60)


def test_drained_and_added_servers_survive_a_reload(stack: Stack, repos: Repos, clean_pool: None,
                                                    tmp_path: Path) -> None:
    git2 = start_git_worker(stack, tmp_path / "git2", "git2")
    try:
        stack.hostd("pool", "add", "git", "git2", git2.address)
        stack.hostd("pool", "drain", "git", "git1")
        stackmod.reload_haproxy(stack.settings)
        listing = stack.hostd("pool", "list", "git").stdout.splitlines()
        assert [line.split("\t")[:2] for line in listing] == [["git/git1", "DRAIN"], ["git/git2", "UP"]]
        assert listing[1].split("\t")[5] == git2.address
        clone(stack, repos.small, tmp_path / "after-reload")
        assert git_server(stack, "git2").total_sessions > 0
        assert git_server(stack, "git1").total_sessions == 0
        stack.hostd("pool", "ready", "git", "git1")
        stack.hostd("pool", "remove", "git", "git2")
    finally:
        git2.stop()


def test_traffic_graph_from_real_clones(stack: Stack, repos: Repos, tmp_path: Path) -> None:
    stop = threading.Event()

    def clone_until_stopped() -> None:
        for i in range(200):
            if stop.is_set():
                return
            clone(stack, repos.small, tmp_path / f"traffic{i}")

    cloning = Background(clone_until_stopped)
    try:
        png = tmp_path / "traffic.png"
        out = stack.hostd("traffic", "--png", str(png), "--minutes", "0.15", "--interval", "0.5").stdout
    finally:
        stop.set()
    cloning.result(timeout=60)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    summary = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()[1:]}
    assert set(summary) == {"git", "hg", "web"}
    git_sessions = int(summary["git"][0].removeprefix("sessions "))
    assert git_sessions > 0
    assert out.splitlines()[0].startswith(f"wrote {png}: ")
