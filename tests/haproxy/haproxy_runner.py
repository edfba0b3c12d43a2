"""Run the real HAProxy on ``haproxy/haproxy.cfg`` for tests, on free 127.0.0.1 ports.

The configuration is used unmodified: everything site-specific is passed in
the ``HOSTD_*`` environment, exactly as the stack does in production. The
process is started the way supervisord starts it (``-W -db``, a second
``-f`` for the storage shards' backends and a third for the peers,
deploy/supervisord.conf), stopped by its own PID, and its log (stdout) is
kept for failure messages. The run directory gets the route files production
gets from ``hostd routes sync``, rendered by the same functions
(hostd/ops/routes.py) from ``shards`` and ``routes``: by default no other
shard and an empty route map; and the peers section, rendered by
hostd/ops/peers.py from ``lb_name`` and ``peers``: by default one peer,
``hostd``, on 127.0.0.1 (a single load balancer).

Usage::

    proxy = HAProxy(haproxy_dir, run_dir, tls, {"git": "127.0.0.1:5001", ...},
                    shards=[ShardServers("s2", git=("127.0.0.1:5004",))],
                    routes=[(RepoName("alice", "proj"), "s2")])
    proxy.check()        # `haproxy -c`
    with proxy:          # start, wait until every server is UP
        proxy.https      # an http_clients.Endpoint
        proxy.reload()   # SIGUSR2, as `make reload`; wait for the new worker

Several load balancers sharing their peers (each its own run directory)::

    lbs = [Peer("lb1", "127.0.0.1", free_port()), Peer("lb2", "127.0.0.1", free_port())]
    lb1 = HAProxy(haproxy_dir, run1, tls, backends, lb_name="lb1", peers=lbs)
    lb2 = HAProxy(haproxy_dir, run2, tls, backends, lb_name="lb2", peers=lbs)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from hostd.names import RepoName
from hostd.ops import peers as peer_files
from hostd.ops import routes as route_files
from hostd.ops.routes import ShardServers
from hostd.ops.tls import TlsFiles
from hostd.settings import DEFAULT_LB_NAME, DEFAULT_SHARD, Peer

from .http_clients import Endpoint

SERVERS = {"git": "git1", "hg": "hg1", "web": "web1"}
START_TIMEOUT = 15.0


def find_haproxy() -> str:
    """The haproxy binary; Debian installs it in /usr/sbin, often not on PATH."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("haproxy not found: install it (Debian: apt-get install haproxy)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HAProxy:
    """One HAProxy master-worker process on a configuration directory."""

    def __init__(
        self,
        haproxy_dir: Path,
        run_dir: Path,
        tls: TlsFiles,
        backends: Mapping[str, str],
        *,
        maxconn: int = 8,
        shards: Sequence[ShardServers] = (),
        routes: Iterable[tuple[RepoName, str]] = (),
        wait_for_shards: bool = True,
        lb_name: str = DEFAULT_LB_NAME,
        peers: Sequence[Peer] = (),
    ) -> None:
        self.haproxy_dir = haproxy_dir.resolve()
        self.run_dir = run_dir
        self.tls = tls
        self.backends = dict(backends)
        self.maxconn = maxconn
        self.shards = tuple(shards)
        self.routes = tuple(routes)
        # Whether start() waits for the shards' servers too (not when a test
        # gives a shard a dead one on purpose).
        self.wait_for_shards = wait_for_shards
        # HOSTD_LB_NAME and HOSTD_PEERS: with peers, this load balancer's
        # peer listens on its entry's address, else on 127.0.0.1:peers_port.
        self.lb_name = lb_name
        self.peers = tuple(peers)
        self.https_port = free_port()
        self.http_port = free_port()
        self.stats_port = free_port()
        self.peers_port = free_port()
        self.log_path = run_dir / "haproxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.haproxy_dir / "haproxy.cfg"

    @property
    def shards_config(self) -> Path:
        """The rendered shard backends: HAProxy's second ``-f``."""
        return self.run_dir / route_files.BACKENDS_FILE

    @property
    def route_map(self) -> Path:
        return self.run_dir / route_files.MAP_FILE

    @property
    def peers_config(self) -> Path:
        """The rendered peers section: HAProxy's third ``-f``."""
        return self.run_dir / peer_files.PEERS_FILE

    def config_arguments(self) -> list[str]:
        """The ``-f`` arguments, in deploy/supervisord.conf's order."""
        return ["-f", str(self.config), "-f", str(self.shards_config), "-f", str(self.peers_config)]

    def command(self) -> list[str]:
        """HAProxy's command line, as deploy/supervisord.conf writes it."""
        return [find_haproxy(), "-W", "-db", *self.config_arguments()]

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "haproxy.sock"

    @property
    def public_url(self) -> str:
        """The configured base URL (HOSTD_PUBLIC_URL) that redirects point to."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def https(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.https_port, self.tls.ca_cert)

    @property
    def http(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.http_port)

    @property
    def stats(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.stats_port)

    def environment(self) -> dict[str, str]:
        """The HOSTD_* variables haproxy.cfg reads, on top of this process's own."""
        env = dict(os.environ)
        env.update(
            HOSTD_BIND="127.0.0.1",
            HOSTD_HTTPS_PORT=str(self.https_port),
            HOSTD_HTTP_PORT=str(self.http_port),
            HOSTD_STATS_PORT=str(self.stats_port),
            HOSTD_PEERS_PORT=str(self.peers_port),
            HOSTD_TLS_PEM=str(self.tls.server_pem),
            HOSTD_HAPROXY_DIR=str(self.haproxy_dir),
            HOSTD_RUN_DIR=str(self.run_dir),
            HOSTD_PUBLIC_URL=self.public_url,
            HOSTD_LB_NAME=self.lb_name,
        )
        for pool, address in self.backends.items():
            # The echo backends listen on TCP only: the health check goes to
            # the same address the traffic does.
            check_host, _, check_port = address.rpartition(":")
            env[f"HOSTD_{pool.upper()}_ADDR"] = address
            env[f"HOSTD_{pool.upper()}_MAXCONN"] = str(self.maxconn)
            env[f"HOSTD_{pool.upper()}_CHECK_HOST"] = check_host
            env[f"HOSTD_{pool.upper()}_CHECK_PORT"] = check_port
        return env

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.run_dir / "haproxy.state"
        if not state.exists():
            # What a first start has: the state file's version line, no servers.
            state.write_text("1\n")
        served = route_files.served_shards(self.shards, home=DEFAULT_SHARD)
        self.shards_config.write_text(route_files.render_backends(self.shards, home=DEFAULT_SHARD))
        self.route_map.write_text(route_files.render_map(self.routes, served=served))
        self.peers_config.write_text(peer_files.render_peers(self.lb_name, self.peers, local_port=self.peers_port))

    def check(self) -> subprocess.CompletedProcess[str]:
        """Run ``haproxy -c`` on the configuration; return the result."""
        self._prepare_run_dir()
        return subprocess.run(
            [find_haproxy(), "-c", *self.config_arguments()],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def log(self) -> str:
        """Everything HAProxy has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def admin(self, command: str) -> str:
        """Send one command to the admin socket and return the answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> status (UP, DOWN, ...) of every server, from ``show stat``."""
        lines = self.admin("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        columns = lines[0][2:].split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
                states[(row["pxname"], row["svname"])] = row.get("status", "")
        return states

    def _awaited(self) -> set[tuple[str, str]]:
        """The servers start() waits for: the home pools', and the shards' unless told not to."""
        awaited = {(pool, server) for pool, server in SERVERS.items()}
        if self.wait_for_shards:
            for shard in self.shards:
                if shard.name == DEFAULT_SHARD:
                    continue
                awaited |= {(f"git-{shard.name}", f"git{n}") for n in range(1, len(shard.git) + 1)}
                awaited |= {(f"hg-{shard.name}", f"hg{n}") for n in range(1, len(shard.hg) + 1)}
        return awaited

    def start(self) -> Self:
        """Start HAProxy and wait until it accepts TLS and every server is UP."""
        self._prepare_run_dir()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        awaited = self._awaited()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self._process.returncode}:\n{self.log()}")
            try:
                states = self.server_states()
            except OSError:
                states = {}
            # Servers start UP ("UP 1/2" until their first check passes);
            # a dead echo backend would turn DOWN and fail the tests loudly.
            if all(states.get(server, "").startswith("UP") for server in awaited):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"haproxy not ready after {START_TIMEOUT}s:\n{self.log()}")

    def worker_pid(self) -> int:
        """The PID of the worker answering on the admin socket."""
        match = re.search(r"^Pid: (\d+)$", self.admin("show info"), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no Pid in 'show info':\n{self.log()}")
        return int(match[1])

    def reload(self) -> None:
        """Reload as ``make reload`` does (SIGUSR2 to the master); return once a new worker answers."""
        if self._process is None:
            raise RuntimeError("haproxy is not running")
        old = self.worker_pid()
        self._process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self._process.returncode}:\n{self.log()}")
            try:
                if self.worker_pid() != old:
                    return
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no new worker {START_TIMEOUT}s after SIGUSR2:\n{self.log()}")

    def stop(self) -> None:
        """Stop the master (which stops its worker), by PID."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
