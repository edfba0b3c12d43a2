"""The multi-host lab: a whole hostd installation spread over network namespaces on one machine.

``make cluster`` (``python -m tests.cluster up``) builds it, ``make
cluster-down`` removes every namespace and process it made, ``make
cluster-check`` (:mod:`tests.cluster.check`) proves it. Each "host" is a
network namespace with one address on a private bridge, and runs what the
same role runs on a real machine (deploy/README.md maps one to the other):

====== ============ ===================================================
host   address      runs
====== ============ ===================================================
pg     .10          PostgreSQL, on TCP, password (scram) logins only
mc1-3  .21-.23      one memcached node each
s1-s3  .31-.33      git and hg pools of storage shard s1, s2, s3, each
                    beside its own repository directory
web    .40          the web pool
lb1-2  .11-.12      HAProxy (TLS, route map, peers) and the route
                    follower; lb1 and lb2 share the failed-login counts;
                    sshd and the SSH gateway, with one set of host keys,
                    relaying sessions to the shards' gateways
====== ============ ===================================================

Every hostd host is a stack (:mod:`hostd.ops.stack`) under its own
supervisord with ``HOSTD_ROLES`` naming what it runs, started with ``ip
netns exec``; the rest is started directly. The bridge has the first
address of the subnet in the root namespace, so the check (and anyone on
the machine) reaches the load balancers. Root only: namespaces and veth
pairs need it. Gray failures are SIGSTOP, partitions ``ip link set down``
(no tc netem, no iptables on this machine).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from hostd.ops import postgres, sshd
from hostd.ops import stack as stackmod
from hostd.ops.haproxy import StackError
from hostd.ops.tls import ensure_certificates
from hostd.settings import DATABASE_NAME, DATABASE_ROLE, PROJECT_ROOT, Ports, Settings

#: The lab's private network (``HOSTD_LAB_SUBNET``, a /24): refused when any
#: address or route of the machine already overlaps it.
DEFAULT_SUBNET = "10.213.0.0/24"
#: Names of everything the lab makes, so that nothing else is touched.
PREFIX = "hostdlab"
BRIDGE = f"{PREFIX}0"
PORTS = Ports()
PG_PORT = 5432
MEMCACHED_PORT = 11211
PEERS_PORT = 10000
#: Storage shards of the lab, each on its own host; the load balancers' home
#: backends reach the first (misses: names that are no repository, or one
#: created a moment ago).
SHARDS = ("s1", "s2", "s3")
HOME_SHARD = SHARDS[0]
BALANCERS = ("lb1", "lb2")


@dataclass(frozen=True, slots=True)
class Host:
    """One machine of the lab: its name, the last octet of its address, its roles."""

    name: str
    octet: int
    roles: tuple[str, ...]

    @property
    def namespace(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def veth(self) -> str:
        """The root-namespace end of its link (the bridge port): ``ip link set ... down`` partitions it."""
        return f"hl-{self.name}"


HOSTS = (
    Host("pg", 10, ("database",)),
    *(Host(f"mc{n}", 20 + n, ("cache",)) for n in (1, 2, 3)),
    *(Host(shard, 30 + n, ("storage",)) for n, shard in enumerate(SHARDS, start=1)),
    Host("web", 40, ("web",)),
    *(Host(name, 10 + n, ("balancer",)) for n, name in enumerate(BALANCERS, start=1)),
)
BY_NAME = {host.name: host for host in HOSTS}
#: The hosts that run a hostd stack, in the order they start.
STACK_HOSTS = tuple(host for host in HOSTS if host.roles[0] in ("storage", "web", "balancer"))


class LabError(Exception):
    """The lab cannot be built here, or is not up."""


def run(command: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(command)} failed (exit {result.returncode}): "
                       f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def in_namespace(host: Host, command: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", host.namespace, *command]


class Lab:
    """The lab under ``root`` (its state, every host's data directory and logs)."""

    def __init__(self, root: Path, subnet: str = DEFAULT_SUBNET) -> None:
        self.root = root.resolve()
        self.network = ipaddress.ip_network(subnet)
        if self.network.version != 4 or self.network.prefixlen != 24:
            raise LabError(f"HOSTD_LAB_SUBNET: {subnet} is not an IPv4 /24")
        self.state_file = self.root / "lab.json"

    @classmethod
    def from_env(cls) -> Lab:
        root = Path(os.environ.get("HOSTD_LAB_DIR") or PROJECT_ROOT / "var" / "cluster")
        return cls(root, os.environ.get("HOSTD_LAB_SUBNET") or DEFAULT_SUBNET)

    # --- where things are -------------------------------------------------
    def address(self, host: Host | str) -> str:
        host = BY_NAME[host] if isinstance(host, str) else host
        return str(self.network.network_address + host.octet)

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace: where the check's clients come from."""
        return str(self.network.network_address + 1)

    def data_dir(self, host: Host | str) -> Path:
        return self.root / (host if isinstance(host, str) else host.name)

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.pem"

    def connect(self, balancer: str, *, source: str | None = None, timeout: float = 10) -> http.client.HTTPSConnection:
        """An HTTPS connection to a load balancer, trusting the lab's CA; from ``source`` (an address) if given."""
        return http.client.HTTPSConnection(
            self.address(balancer), PORTS.https, timeout=timeout,
            context=ssl.create_default_context(cafile=str(self.ca_file)),
            source_address=(source, 0) if source is not None else None)

    def url(self, balancer: str, path: str = "", user: str | None = None, password: str | None = None) -> str:
        credentials = f"{user}:{password}@" if user is not None else ""
        return f"https://{credentials}{self.address(balancer)}:{PORTS.https}/{path}"

    @property
    def database_url(self) -> str:
        return (f"postgresql://{DATABASE_ROLE}:{self._state()['pg_password']}@{self.address('pg')}:{PG_PORT}"
                f"/{DATABASE_NAME}?connect_timeout=3")

    def environment(self, host: Host | str) -> dict[str, str]:
        """The environment of a hostd host: what its unit files would set on a real machine."""
        host = BY_NAME[host] if isinstance(host, str) else host
        balancers = [self.address(name) for name in BALANCERS]
        env = dict(os.environ)
        env.update(
            HOSTD_DATA=str(self.data_dir(host)),
            HOSTD_ROLES=",".join(host.roles),
            HOSTD_BIND=self.address(host),
            # The name users clone from (pages print it): the first load balancer's address.
            HOSTD_PUBLIC_HOST=self.address(BALANCERS[0]),
            HOSTD_DATABASE_URL=self.database_url,
            HOSTD_MEMCACHED=",".join(f"{self.address(f'mc{n}')}:{MEMCACHED_PORT}" for n in (1, 2, 3)),
            HOSTD_WORKERS="1",
            HOSTD_THREADS="4",
            # Requests reach the pools from the load balancers, over the network.
            HOSTD_TRUSTED_PROXIES=",".join(balancers),
            HOSTD_SHARD=host.name if "storage" in host.roles else HOME_SHARD,
            PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin",
        )
        if "balancer" in host.roles:
            env.update(
                HOSTD_LB_NAME=host.name,
                HOSTD_PEERS=",".join(f"{name}={self.address(name)}:{PEERS_PORT}" for name in BALANCERS),
                HOSTD_GIT_SERVER=f"{self.address(HOME_SHARD)}:{PORTS.git}",
                HOSTD_HG_SERVER=f"{self.address(HOME_SHARD)}:{PORTS.hg}",
                HOSTD_WEB_SERVER=f"{self.address('web')}:{PORTS.web}",
            )
        return env

    def settings(self, host: Host | str) -> Settings:
        return Settings.from_env(self.environment(host))

    def hostd(self, host: str, *args: str, input: str | None = None, check: bool = True,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``hostd ARGS`` run on ``host``, in its namespace and environment."""
        command = in_namespace(BY_NAME[host], [str(Path(sys.executable).parent / "hostd"), *args])
        result = subprocess.run(command, env=self.environment(host), input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise LabError(f"hostd {' '.join(args)} on {host} failed: {result.stderr.strip()}")
        return result

    def namespace_pids(self, host: Host | str) -> list[int]:
        """Every process in the host's namespace."""
        host = BY_NAME[host] if isinstance(host, str) else host
        result = run(["ip", "netns", "pids", host.namespace], check=False)
        return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []

    def signal_host(self, host: str, signum: int) -> int:
        """Send ``signum`` to every process of a host (SIGSTOP: a gray failure); returns how many."""
        pids = self.namespace_pids(host)
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        return len(pids)

    def link(self, host: str, up: bool) -> None:
        """Connect or cut a host's link to the bridge (a partition)."""
        run(["ip", "link", "set", BY_NAME[host].veth, "up" if up else "down"])

    # --- state ------------------------------------------------------------
    def _state(self) -> dict[str, object]:
        try:
            state: dict[str, object] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            raise LabError(f"the lab is not up ({self.state_file} missing): make cluster") from None
        return state

    def _save(self, **values: object) -> None:
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        state.update(values)
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def is_up(self) -> bool:
        return self.state_file.exists()

    # --- up ---------------------------------------------------------------
    def _check_free(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces and veth pairs)")
        for tool in ("ip", "memcached", "haproxy"):
            if shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
                raise LabError(f"{tool} is not installed (make install)")
        if self.is_up():
            raise LabError(f"a lab is already up ({self.state_file}): make cluster-down first")
        existing = run(["ip", "netns", "list"]).stdout.split()
        ours = sorted(name for name in existing if name.startswith(f"{PREFIX}-"))
        if ours or run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
            raise LabError(f"left over from an earlier lab: {', '.join(ours) or BRIDGE}: make cluster-down first")
        for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines() + \
                run(["ip", "-4", "route", "show"]).stdout.splitlines():
            for word in line.split():
                try:
                    other = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if other.prefixlen > 0 and other.overlaps(self.network):
                    raise LabError(f"{self.network} is in use on this machine ({line.strip()}); "
                                   "set HOSTD_LAB_SUBNET to a free /24")

    def up(self) -> None:
        """Build the network, start every host, and place the shards; LabError on any failure (undone)."""
        self._check_free()
        # A new lab: what an earlier one left (its data and logs) goes.
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self._save(subnet=str(self.network), pg_password=secrets.token_urlsafe(18), memcached={})
        try:
            self._network()
            self._postgres()
            self._memcached()
            self._shared_files()
            for host in STACK_HOSTS:
                if "balancer" in host.roles:
                    continue
                self._start_stack(host)
            self._place_shards()
            for name in BALANCERS:
                self._start_stack(BY_NAME[name])
        except BaseException:
            self.down()
            raise

    def _network(self) -> None:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for host in HOSTS:
            run(["ip", "netns", "add", host.namespace])
            run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
            run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
            run(in_namespace(host, ["ip", "addr", "add", f"{self.address(host)}/{self.network.prefixlen}",
                                    "dev", "eth0"]))
            run(in_namespace(host, ["ip", "link", "set", "eth0", "up"]))
            run(in_namespace(host, ["ip", "link", "set", "lo", "up"]))

    def _postgres(self) -> None:
        """PostgreSQL on the pg host: the stack's own cluster layout, opened to the lab's network by password."""
        settings = Settings(data_dir=self.data_dir("pg"))
        self.data_dir("pg").mkdir(parents=True, exist_ok=True)
        postgres.ensure_cluster(settings)
        password = str(self._state()["pg_password"])
        with postgres.temporary_server(settings):
            with psycopg.connect(settings.database, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(DATABASE_ROLE), sql.Literal(password)))
        cluster = settings.postgres_dir
        with open(cluster / "postgresql.conf", "a") as conf:
            conf.write(f"\n# The lab's database host (tests/cluster/lab.py)\n"
                       f"listen_addresses = '{self.address('pg')}'\nport = {PG_PORT}\nmax_connections = 300\n")
        hba = cluster / "pg_hba.conf"
        hba.write_text(f"host {DATABASE_NAME} {DATABASE_ROLE} {self.network} scram-sha-256\n" + hba.read_text())
        server = postgres.server()
        start = [server.tool("pg_ctl"), "-D", str(cluster), "-l", str(cluster / "lab.log"), "-w", "-t", "60", "start"]
        run(in_namespace(BY_NAME["pg"], postgres.as_user(server, start)))

    def _memcached(self) -> None:
        pids = {}
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        for host in HOSTS:
            if "cache" not in host.roles:
                continue
            log = open(self.root / f"{host.name}.log", "ab")  # noqa: SIM115 - the process keeps it
            process = subprocess.Popen(
                in_namespace(host, [binary, "-u", "nobody", "-l", self.address(host), "-p", str(MEMCACHED_PORT),
                                    "-U", "0", "-m", "64", "-c", "1024"]),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            pids[host.name] = process.pid  # ip netns exec execs memcached: the same process
        self._save(memcached=pids)

    def _shared_files(self) -> None:
        """One server secret for every host; one certificate (both load balancers' addresses) and one set of
        SSH host keys for the balancers, as a real site copies them (else users see a changed host key)."""
        secret = secrets.token_bytes(32)
        ensure_certificates(self.root / "tls", (*(self.address(name) for name in BALANCERS), "localhost"))
        self._host_keys()
        for host in STACK_HOSTS:
            data = self.data_dir(host)
            data.mkdir(parents=True, exist_ok=True)
            os.chmod(data, 0o700)
            fd = os.open(data / "secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secret)
            if "balancer" in host.roles:
                shutil.copytree(self.root / "tls", data / "tls", dirs_exist_ok=True)
                # sshd only generates the keys a data directory lacks: these are kept.
                shutil.copytree(self.ssh_dir, data / "ssh", dirs_exist_ok=True)

    @property
    def ssh_dir(self) -> Path:
        """The balancers' SSH host keys, made once (every balancer's ``DATA/ssh`` is a copy)."""
        return self.root / "ssh"

    def _host_keys(self) -> None:
        self.ssh_dir.mkdir(mode=0o700)
        for kind, options in sshd.HOST_KEYS:
            run(["ssh-keygen", "-q", "-N", "", "-t", kind, *options, "-C", "hostd-lab",
                 "-f", str(self.ssh_dir / f"ssh_host_{kind}_key")])

    def _start_stack(self, host: Host) -> None:
        command = in_namespace(host, [sys.executable, "-m", "hostd.ops.stack", "up"])
        result = subprocess.run(command, env=self.environment(host), capture_output=True, text=True, timeout=300,
                                check=False, cwd=PROJECT_ROOT)
        if result.returncode != 0:
            raise LabError(f"{host.name} did not start: {(result.stderr or result.stdout).strip()[-2000:]}"
                           f" (logs: {self.data_dir(host) / 'log'})")

    def restart(self, host: str) -> None:
        """Start a host's stack again after it died (its processes killed, its pid files stale)."""
        for pid in self.namespace_pids(host):
            os.kill(pid, signal.SIGKILL)
        self._start_stack(BY_NAME[host])

    def _place_shards(self) -> None:
        """Every shard's pools, as the database tells the load balancers; new repositories go to s1-s3."""
        for shard in SHARDS:
            address = self.address(shard)
            self.hostd(shard, "shard", "servers", shard, "--git", f"{address}:{PORTS.git}",
                       "--hg", f"{address}:{PORTS.hg}")
        self.hostd(HOME_SHARD, "shard", "weight", "default", "0")

    # --- down -------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every process and remove every namespace and link the lab made; what was removed."""
        removed: list[str] = []
        namespaces = [name for name in run(["ip", "netns", "list"], check=False).stdout.split()
                      if name.startswith(f"{PREFIX}-")]
        # A host left stopped (SIGSTOP) by an interrupted check hears nothing until it continues.
        for host in HOSTS:
            if host.namespace in namespaces:
                self.signal_host(host.name, signal.SIGCONT)
        for host in STACK_HOSTS:
            try:
                if stackmod.stop(Settings(data_dir=self.data_dir(host)), timeout=60):
                    removed.append(f"{host.name}: supervisord and its programs")
            except StackError as error:
                removed.append(f"{host.name}: {error}")
        cluster = Settings(data_dir=self.data_dir("pg")).postgres_dir
        if (cluster / "postmaster.pid").exists():
            server = postgres.server()
            if run(postgres.as_user(server, [server.tool("pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"]),
                   check=False).returncode == 0:
                removed.append("pg: PostgreSQL")
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        for name, pid in dict(state.get("memcached") or {}).items():
            try:
                os.kill(int(pid), signal.SIGTERM)
                removed.append(f"{name}: memcached")
            except ProcessLookupError:
                pass
        # Whatever is still in a lab namespace was started in it by the lab.
        deadline = time.monotonic() + 10
        for name in namespaces:
            member = BY_NAME.get(name[len(PREFIX) + 1:])
            while member is not None and self.namespace_pids(member) and time.monotonic() < deadline:
                time.sleep(0.1)
            if member is not None:
                for pid in self.namespace_pids(member):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        removed.append(f"{member.name}: pid {pid} killed")
                    except ProcessLookupError:
                        pass
            run(["ip", "netns", "del", name], check=False)
            removed.append(f"namespace {name}")
        if run(["ip", "link", "del", BRIDGE], check=False).returncode == 0:
            removed.append(f"bridge {BRIDGE}")
        self.state_file.unlink(missing_ok=True)
        return removed

    # --- what runs where --------------------------------------------------
    def layout(self) -> str:
        rows = [f"{'host':<5} {'address':<13} {'namespace':<16} runs"]
        for host in HOSTS:
            rows.append(f"{host.name:<5} {self.address(host):<13} {host.namespace:<16} {self._runs(host)}")
        rows.append("")
        rows.append(f"clone through either load balancer: GIT_SSL_CAINFO={self.ca_file} git clone "
                    f"{self.url('lb1', 'demo/hello.git')}")
        rows.append(f"over SSH (after hostd key add): ssh://git@{self.address('lb1')}:{PORTS.ssh}/OWNER/NAME.git,"
                    f" host keys in {self.ssh_dir}/ (the same on both load balancers)")
        rows.append(f"data, logs: {self.root}/<host>/   stop it all: make cluster-down")
        return "\n".join(rows)

    def _runs(self, host: Host) -> str:
        role = host.roles[0]
        if role == "database":
            return f"PostgreSQL :{PG_PORT}"
        if role == "cache":
            return f"memcached :{MEMCACHED_PORT}"
        if role == "storage":
            return (f"shard {host.name}: git pool :{PORTS.git}, hg pool :{PORTS.hg}, SSH relay :{PORTS.ssh_relay},"
                    f" queue pool :{PORTS.queue}")
        if role == "web":
            return f"web pool :{PORTS.web}"
        return (f"HAProxy https :{PORTS.https}, http :{PORTS.http}, stats :{PORTS.stats}, peers :{PEERS_PORT};"
                f" route follower (home shard {HOME_SHARD}); sshd :{PORTS.ssh} and its SSH gateway")
