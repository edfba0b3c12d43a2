"""How hosts are named and what each runs: shards, roles, load balancers and their peers, pools on other hosts.

Part of :mod:`hostd.settings` (which re-exports every public name here):
the variables that spread one installation over several hosts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hostd.settings.errors import SettingsError

#: The shard of a single-host installation, and of every repository created
#: before shards existed.
DEFAULT_SHARD = "default"
#: A shard's or a load balancer's name: written unquoted into HAProxy's
#: configuration (backend names ``git-<shard>``, route-map values, the peers
#: section) and compared as written (``localpeer``), so nothing HAProxy would
#: read as a separator, a quote or a variable, and lower case only.
_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")


def is_shard_name(text: str) -> bool:
    """Whether ``text`` is a valid shard name (1-32 of ``a-z0-9-``, starting with a letter)."""
    return _NAME.match(text) is not None


#: What a host runs (``HOSTD_ROLES``; default: all of them, one host): the
#: programs of deploy/supervisord.conf each role starts. ``balancer``: HAProxy
#: and the route follower; ``storage``: the git and hg pools beside the
#: repository directory of one shard, and the queue workers of its jobs; ``web``: the web pool; ``cache``: a
#: memcached node; ``database``: the stack's own PostgreSQL (only without
#: ``HOSTD_DATABASE_URL``).
ROLES = ("balancer", "storage", "web", "cache", "database")
#: The programs of each role, as deploy/supervisord.conf names them.
ROLE_PROGRAMS = {
    "balancer": ("haproxy", "routes", "sshd", "sshgate"),
    "storage": ("git", "hg", "sshgate", "queue"),
    "web": ("web",),
    "cache": ("memcached",),
    "database": ("postgres",),
}
#: The pools a load balancer's home backends reach (haproxy.cfg ``git``, ``hg``, ``web``).
POOLS = ("git", "hg", "web")

#: The HAProxy peer name of a single load balancer (``HOSTD_LB_NAME`` unset).
DEFAULT_LB_NAME = "hostd"
#: An IPv4 address, or an IPv6 one in brackets, and a port.
_IP_PORT = re.compile(r"(?:(?P<ipv4>[0-9.]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]):(?P<port>[0-9]{1,5})\Z")


def is_lb_name(text: str) -> bool:
    """Whether ``text`` is a valid load balancer name (1-32 of ``a-z0-9-``, starting with a letter)."""
    return _NAME.match(text) is not None


@dataclass(frozen=True, slots=True)
class Peer:
    """One load balancer of ``HOSTD_PEERS``: its peer name and the address its HAProxy's peers listen on.

    ``host`` is an IP address (IPv6 without brackets); :attr:`address`
    spells it as HAProxy reads it.
    """

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def load_balancers(env: Mapping[str, str]) -> tuple[str, tuple[Peer, ...]]:
    """``lb_name`` and ``peers`` from ``HOSTD_LB_NAME`` and ``HOSTD_PEERS``, checked against each other."""
    name = env.get("HOSTD_LB_NAME") or DEFAULT_LB_NAME
    if not is_lb_name(name):
        raise SettingsError(f"HOSTD_LB_NAME: {name!r} is not a load balancer name"
                            " (1-32 of a-z, 0-9 and -, starting with a letter)")
    peers = tuple(_peer(entry.strip()) for entry in env.get("HOSTD_PEERS", "").split(",") if entry.strip())
    names = [peer.name for peer in peers]
    addresses = [peer.address for peer in peers]
    if len(set(names)) != len(names):
        raise SettingsError(f"HOSTD_PEERS names a load balancer twice: {', '.join(names)}")
    if len(set(addresses)) != len(addresses):
        raise SettingsError("HOSTD_PEERS gives two load balancers the same address")
    if peers and name not in names:
        # HAProxy would silently drop a peers section without its local peer:
        # no counts shared, none handed over on a reload.
        raise SettingsError(f"HOSTD_PEERS does not list this load balancer, HOSTD_LB_NAME={name!r}")
    return name, peers


def _peer(entry: str) -> Peer:
    name, sep, address = entry.partition("=")
    if not sep:
        raise SettingsError(f"HOSTD_PEERS: {entry!r} is not name=host:port (an IPv6 host in brackets)")
    name = name.strip()
    if not is_lb_name(name):
        raise SettingsError(f"HOSTD_PEERS: {name!r} is not a load balancer name"
                            " (1-32 of a-z, 0-9 and -, starting with a letter)")
    host, port = _ip_port(f"HOSTD_PEERS: {entry!r}", address.strip())
    # Every load balancer connects to this address, and its own listens on it.
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified or ip.is_multicast:
        raise SettingsError(f"HOSTD_PEERS: {entry!r}: {host} is no address a peer can connect to")
    return Peer(name, host, port)


def roles(env: Mapping[str, str]) -> frozenset[str]:
    """``HOSTD_ROLES``; a host without the database or cache role must be told where they are."""
    raw = env.get("HOSTD_ROLES", "").strip()
    if not raw:
        return frozenset(ROLES)
    roles = frozenset(role.strip() for role in raw.split(",") if role.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        raise SettingsError(f"HOSTD_ROLES: {', '.join(unknown) or repr(raw)} is not a role"
                            f" (roles: {', '.join(ROLES)})")
    if "database" not in roles and not env.get("HOSTD_DATABASE_URL", "").strip():
        raise SettingsError("HOSTD_ROLES has no database role: HOSTD_DATABASE_URL must name the database")
    if "cache" not in roles and not env.get("HOSTD_MEMCACHED", "").strip():
        raise SettingsError("HOSTD_ROLES has no cache role: HOSTD_MEMCACHED must name the memcached nodes")
    return roles


def pool_servers(env: Mapping[str, str]) -> tuple[tuple[str, str, int], ...]:
    """``HOSTD_GIT_SERVER``, ``HOSTD_HG_SERVER``, ``HOSTD_WEB_SERVER``: ``(pool, ip, port)`` of those set."""
    servers = []
    for pool in POOLS:
        raw = env.get(f"HOSTD_{pool.upper()}_SERVER", "").strip()
        if raw:
            servers.append((pool, *_ip_port(f"HOSTD_{pool.upper()}_SERVER", raw)))
    return tuple(servers)


def _ip_port(what: str, text: str) -> tuple[str, int]:
    """``ip:port``, an IPv6 address in brackets (an IPv4 one not): the address, compressed, and the port."""
    match = _IP_PORT.match(text)
    try:
        host = ipaddress.ip_address(match["ipv4"] or match["ipv6"]) if match else None
    except ValueError:
        host = None
    if match is None or host is None or bool(match["ipv6"]) != (host.version == 6):
        raise SettingsError(f"{what}: {text!r} is not ip:port (an IPv6 address in brackets)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise SettingsError(f"{what}: {port} is not a TCP port")
    return host.compressed, port
