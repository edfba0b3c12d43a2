"""Shared fixtures: real memcached servers and a cheap password hasher."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from singlemalt import PasswordHasher, SafeMemcache
from tests.polling import wait_until

MEMCACHED = "/usr/bin/memcached"


@dataclass
class Memcached:
    """A memcached process this test run started; stopped by its own PID only."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ttl(self, key: str) -> int:
        """Seconds until ``key`` expires, read with memcached's meta get (-1: never, -2: absent)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(f"mg {key} t\r\n".encode())
            reply = sock.recv(256).decode().split()
        if reply[0] == "EN":
            return -2
        return int(next(flag[1:] for flag in reply[1:] if flag.startswith("t")))

    def keys(self, at_least: int = 1) -> list[str]:
        """Every key stored, as anyone who can reach memcached can list them (``lru_crawler metadump``).

        The crawler may miss an item written a moment ago, so this asks again
        until at least ``at_least`` keys are listed.
        """
        listed: list[str] = []

        def dump() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"lru_crawler metadump all\r\n")
                data = b""
                while not data.endswith(b"END\r\n") and (chunk := sock.recv(65536)):
                    data += chunk
            listed[:] = [unquote(line.split()[0].removeprefix(b"key=").decode())
                         for line in data.splitlines() if line.startswith(b"key=")]
            return len(listed) >= at_least

        wait_until(f"memcached lists {at_least} keys", dump, timeout=10, interval=0.05)
        return listed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP, and wait until every thread has stopped: a thread running on
        another core when the signal is sent can still answer a request."""
        os.kill(self.process.pid, signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + 10
        while any((task / "stat").read_text().rsplit(")", 1)[1].split()[0] != "T" for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("memcached did not stop")
            time.sleep(0.005)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_memcached(port: int | None = None) -> Memcached:
    """Start memcached on a free (or the given) loopback port and wait until it answers."""
    port = port or _free_port()
    command = [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-t", "2"]
    if os.geteuid() == 0:
        command += ["-u", pwd.getpwuid(0).pw_name]  # memcached refuses root without -u
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Memcached(process, port)
        except OSError:
            time.sleep(0.02)
    process.kill()
    process.wait()
    raise RuntimeError("memcached did not start")


@pytest.fixture
def memcached_factory() -> Iterator[Callable[..., Memcached]]:
    """Start private memcached servers (for tests that kill them); all stopped afterwards."""
    started: list[Memcached] = []

    def start(port: int | None = None) -> Memcached:
        server = start_memcached(port)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.resume()
        server.kill()


@pytest.fixture(scope="session")
def shared_memcached() -> Iterator[Memcached]:
    """One memcached for the whole session, for tests that do not disturb it."""
    server = start_memcached()
    yield server
    server.kill()


@pytest.fixture
def memcache(shared_memcached: Memcached) -> SafeMemcache:
    """A SafeMemcache on the shared server (tests use distinct keys)."""
    return SafeMemcache(shared_memcached.address)


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    """argon2 at the lowest cost: production defaults would make the suite slow."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class FakeClock:
    """A clock the test moves by hand (``clock.now += 10``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def nodes(memcached_factory: Callable[..., Memcached]) -> list[Memcached]:
    """A cluster of three memcached nodes of this test's own."""
    return [memcached_factory() for _ in range(3)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

