"""The one place hostd reads its environment.

Everything configurable enters here, is parsed once into a frozen
:class:`Settings`, and is passed down. Bad values fail fast with a message
naming the variable, so a typo in a unit file stops the pool at start rather
than opening anything.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from hostd.settings.background import Background
from hostd.settings.errors import SettingsError
from hostd.settings.hosts import (
    DEFAULT_LB_NAME,
    DEFAULT_SHARD,
    POOLS,
    ROLE_PROGRAMS,
    ROLES,
    Peer,
    is_lb_name,
    is_shard_name,
    load_balancers,
    pool_servers,
    roles,
)

__all__ = ["Background", "DEFAULT_LB_NAME", "DEFAULT_SHARD", "POOLS", "ROLES", "ROLE_PROGRAMS", "Peer", "Ports",
           "Settings", "SettingsError", "is_lb_name", "is_shard_name"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
#: The role and database of the stack-managed PostgreSQL.
DATABASE_ROLE = "hostd"
DATABASE_NAME = "hostd"
#: The ``HOSTD_TRUSTED_PROXIES`` entry for peers on the pools' unix sockets.
UNIX_SOCKET = "unix"
@dataclass(frozen=True, slots=True)
class Ports:
    """Every TCP port of one stack; all bind to :attr:`Settings.bind` but
    :attr:`peers`, which is on 127.0.0.1 only."""

    https: int = 8443
    http: int = 8080
    stats: int = 8404
    #: HAProxy's local peer, on 127.0.0.1 (the protocol has no authentication):
    #: the old worker hands its stick tables to the new one on this port during
    #: a reload (hostd/ops/peers.py, ``peers hostd``). Unused when
    #: ``HOSTD_PEERS`` is given: its entry for this load balancer says where.
    peers: int = 8405
    git: int = 8101
    hg: int = 8102
    web: int = 8103
    memcached: int = 11311
    #: OpenSSH's sshd for git and hg (hostd/ops/sshd.py).
    ssh: int = 2222
    #: The SSH gateway's relay, where another host's gateway hands over a
    #: session for a repository of this host's shard (hostd/ssh/relay.py).
    ssh_relay: int = 8104
    #: The queue pool's ``/metrics`` and ``/healthz`` (hostd/work/pool.py).
    queue: int = 8106


@dataclass(frozen=True, slots=True)
class Settings:
    """Frozen configuration of one hostd installation."""

    data_dir: Path
    bind: str = "127.0.0.1"
    ports: Ports = Ports()
    workers: int = 2
    threads: int = 4
    #: Whose ``X-Forwarded-For`` the pools believe: :data:`UNIX_SOCKET` (the
    #: HAProxy in front, which reaches each pool over a unix socket in the
    #: 0700 run directory) and/or IP addresses and networks (a proxy on
    #: another host). Never 127.0.0.1 by default: every local process
    #: connects from there and could name its own client address.
    trusted_proxies: tuple[str, ...] = (UNIX_SOCKET,)
    #: 2 GiB, GitHub's per-push limit (a push of 1 GiB of content is a bit over 1 GiB).
    max_push_bytes: int = 2 * 1024**3
    #: Who generates packs for clones and fetches: ``git`` (git's own
    #: upload-pack, required), ``dulwich`` (pure Python), or ``auto``
    #: (git where it is installed).
    git_pack: str = "auto"
    public_host: str = "127.0.0.1"
    #: An existing PostgreSQL (a libpq URL, ``HOSTD_DATABASE_URL``); None:
    #: the stack runs its own cluster in :attr:`postgres_dir`, on a unix
    #: socket only.
    database_url: str | None = field(default=None, repr=False)
    #: The memcached nodes every pool shares (``HOSTD_MEMCACHED``,
    #: ``host:port[,host:port...]``); empty: the stack's own, on
    #: :attr:`memcached_server`.
    memcached_nodes: tuple[str, ...] = ()
    #: The storage shard this host's git and hg pools serve (``HOSTD_SHARD``):
    #: they hold that shard's repositories and refuse the others' with a 421.
    #: It is also the shard a load balancer reaches through its home backends
    #: (``git``, ``hg``): requests for its repositories, and for names that are
    #: no repository, need no entry in the route map (hostd/ops/routes.py).
    shard: str = DEFAULT_SHARD
    #: This load balancer's name among the HAProxy peers (``HOSTD_LB_NAME``):
    #: haproxy.cfg's ``localpeer``, so HAProxy knows which of the peers it is.
    lb_name: str = DEFAULT_LB_NAME
    #: Every load balancer sharing the failed-login counts, this one included
    #: (``HOSTD_PEERS``, ``name=host:port[,...]``, the same list on each);
    #: empty: a single load balancer, whose peers listen on 127.0.0.1 only
    #: (:attr:`Ports.peers`), for the reload handover.
    peers: tuple[Peer, ...] = ()
    #: What this host runs (:data:`ROLES`).
    roles: frozenset[str] = frozenset(ROLES)
    #: Pools this load balancer's home backends reach on other hosts
    #: (``HOSTD_GIT_SERVER``, ``HOSTD_HG_SERVER``, ``HOSTD_WEB_SERVER``, each
    #: ``ip:port``, the pool's TCP port): ``(pool, ip, port)``. A pool not
    #: named here is this host's own, reached over its unix socket.
    pool_servers: tuple[tuple[str, str, int], ...] = ()
    #: The queue workers: webhooks, maintenance (hostd/settings/background.py).
    background: Background = Background()
    #: The operator's certificate chain (PEM, the server's certificate first) and its
    #: key (``HOSTD_TLS_CERT``, ``HOSTD_TLS_KEY``: both or neither); None: the stack's
    #: own CA issues one (hostd/ops/tls.py builds HAProxy's file from either).
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def pool_server(self, pool: str) -> tuple[str, int] | None:
        """Where the home backend ``pool`` sends requests when the pool runs on another host."""
        for name, host, port in self.pool_servers:
            if name == pool:
                return host, port
        return None

    def runs(self, program: str) -> bool:
        """Whether this host starts ``program`` of deploy/supervisord.conf (by :attr:`roles`)."""
        if program == "postgres" and not self.managed_database:
            return False
        return any(program in ROLE_PROGRAMS[role] for role in self.roles)

    @property
    def repo_root(self) -> Path:
        return self.data_dir / "repos"

    @property
    def pushlog_spool(self) -> Path:
        """Push-log entries kept while the database cannot be reached (:mod:`hostd.store.spool`).

        Beside the repositories they describe (no owner's name starts with a
        dot), so that a pool host keeps nothing of its own.
        """
        return self.repo_root / ".spool" / "pushlog"

    @property
    def legacy_database(self) -> Path:
        """The SQLite file of releases before PostgreSQL: imported once, then kept aside."""
        return self.data_dir / "hostd.db"

    @property
    def postgres_dir(self) -> Path:
        """The stack-managed PostgreSQL cluster: its data, and its unix socket."""
        return self.data_dir / "postgres"

    @property
    def managed_database(self) -> bool:
        """Whether the stack runs the database itself (no ``HOSTD_DATABASE_URL``)."""
        return self.database_url is None

    @property
    def database(self) -> str:
        """The libpq URL of hostd's database."""
        if self.database_url is not None:
            return self.database_url
        return f"postgresql://{DATABASE_ROLE}@/{DATABASE_NAME}?host={quote(str(self.postgres_dir), safe='/')}"

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "secret"

    @property
    def instance_file(self) -> Path:
        """This data directory's identity, which its pools name in ``/readyz`` (:mod:`hostd.guard.health`)."""
        return self.data_dir / "instance"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def ssh_socket(self) -> Path:
        """The SSH gateway's socket, where sshd's ``hostd-ssh`` hands over sessions and key lookups."""
        return self.run_dir / "ssh.sock"

    def pool_socket(self, pool: str) -> Path:
        """The unix socket on which HAProxy reaches a pool (its TCP port is the side door)."""
        return self.run_dir / f"{pool}.sock"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def memcached_server(self) -> tuple[str, int]:
        """The stack's own memcached node (used when ``HOSTD_MEMCACHED`` is unset)."""
        return (self.bind, self.ports.memcached)

    @property
    def memcached(self) -> tuple[str, ...]:
        """Every memcached node the pools spread their keys over, as ``host:port``."""
        if self.memcached_nodes:
            return self.memcached_nodes
        host, port = self.memcached_server
        return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}",)

    @property
    def base_url(self) -> str:
        """The HTTPS URL users clone from."""
        host = self.public_host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.ports.https}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``HOSTD_*`` variables; unset ones take the documented defaults."""
        env = os.environ if environ is None else environ
        default_ports = Ports()
        ports = Ports(
            **{
                name: _port(env, f"HOSTD_{name.upper()}_PORT", getattr(default_ports, name))
                for name in Ports.__dataclass_fields__
            }
        )
        if len(set(vars_of(ports))) != len(vars_of(ports)):
            raise SettingsError(f"two HOSTD_*_PORT variables name the same port: {ports}")
        bind = env.get("HOSTD_BIND", "127.0.0.1")
        _address("HOSTD_BIND", bind)
        proxies = tuple(p.strip() for p in env.get("HOSTD_TRUSTED_PROXIES", UNIX_SOCKET).split(",") if p.strip())
        for proxy in proxies:
            if proxy == UNIX_SOCKET:
                continue
            try:
                ipaddress.ip_network(proxy)
            except ValueError:
                raise SettingsError(
                    f"HOSTD_TRUSTED_PROXIES: {proxy!r} is neither {UNIX_SOCKET!r} nor an address"
                ) from None
        lb_name, peers = load_balancers(env)
        tls_cert, tls_key = _tls_files(env)
        return cls(
            data_dir=Path(env.get("HOSTD_DATA", str(PROJECT_ROOT / "var"))).resolve(),
            bind=bind,
            ports=ports,
            workers=_positive(env, "HOSTD_WORKERS", 2),
            threads=_positive(env, "HOSTD_THREADS", 4),
            trusted_proxies=proxies,
            max_push_bytes=_positive(env, "HOSTD_MAX_PUSH_BYTES", 2 * 1024**3),
            git_pack=_choice(env, "HOSTD_GIT_PACK", ("auto", "git", "dulwich")),
            public_host=env.get("HOSTD_PUBLIC_HOST", bind),
            database_url=_database_url(env),
            memcached_nodes=_memcached_nodes(env),
            shard=_shard(env),
            lb_name=lb_name,
            peers=peers,
            roles=roles(env),
            pool_servers=pool_servers(env),
            background=Background.from_env(env),
            tls_cert=tls_cert,
            tls_key=tls_key,
        )


def vars_of(ports: Ports) -> list[int]:
    """The port numbers of a :class:`Ports`, in field order."""
    return [getattr(ports, name) for name in Ports.__dataclass_fields__]


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first when unset."""
    value = env.get(name) or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive(env, name, default)
    if value > 65535:
        raise SettingsError(f"{name}={value} is not a TCP port")
    return value


def _address(name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an IP address") from None


def _database_url(env: Mapping[str, str]) -> str | None:
    url = env.get("HOSTD_DATABASE_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        # Never echo the value: a URL may carry a password.
        raise SettingsError("HOSTD_DATABASE_URL must be a postgresql:// URL")
    return url


def _shard(env: Mapping[str, str]) -> str:
    value = env.get("HOSTD_SHARD", DEFAULT_SHARD)
    if not is_shard_name(value):
        raise SettingsError(f"HOSTD_SHARD: {value!r} is not a shard name"
                            " (1-32 of a-z, 0-9 and -, starting with a letter)")
    return value


def _tls_files(env: Mapping[str, str]) -> tuple[Path, Path] | tuple[None, None]:
    """``HOSTD_TLS_CERT`` and ``HOSTD_TLS_KEY``: both absolute paths, or neither set."""
    cert, key = (env.get(name, "").strip() for name in ("HOSTD_TLS_CERT", "HOSTD_TLS_KEY"))
    if not cert and not key:
        return None, None
    if not cert or not key:
        raise SettingsError("HOSTD_TLS_CERT and HOSTD_TLS_KEY go together: the certificate chain and its key")
    for name, value in (("HOSTD_TLS_CERT", cert), ("HOSTD_TLS_KEY", key)):
        if not os.path.isabs(value):
            raise SettingsError(f"{name}={value!r} is not an absolute path")
    # Not resolved: certbot's live/ names are symlinks that each renewal points at new files.
    return Path(cert), Path(key)


def _memcached_nodes(env: Mapping[str, str]) -> tuple[str, ...]:
    nodes = tuple(node.strip() for node in env.get("HOSTD_MEMCACHED", "").split(",") if node.strip())
    for node in nodes:
        host, sep, port = node.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"HOSTD_MEMCACHED: {node!r} is not host:port")
    return nodes
