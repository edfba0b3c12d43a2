"""The TCP ports a stack listens on, whether they are free, and who holds those that are not.

``make up`` and ``make run`` (:func:`hostd.ops.stack.start`) ask before they
start anything. A port held by another stack would otherwise let the new one
say "hostd is up" while its clients reach the other stack: its HAProxy (with
a certificate they do not trust) or its pools (with its data)::

    problem = listeners.taken(listeners.listeners(settings, starts=lambda program: settings.runs(program)))
    if problem is not None:
        raise StackError(problem)   # "port 8443 (HTTPS, HAProxy) is taken by haproxy (pid 4242)"

The owner comes from ``ss -Htlnp`` (iproute2); a process ``ss`` does not
show (another user's, without root) is "another process".
"""

from __future__ import annotations

import errno
import ipaddress
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from hostd.ops.peers import LOOPBACK
from hostd.settings import POOLS, Settings


@dataclass(frozen=True, slots=True)
class Listener:
    """One TCP port a program of the stack listens on, and what for (as the refusal names it)."""

    port: int
    host: str
    purpose: str


def listeners(settings: Settings, *, starts: Callable[[str], bool]) -> list[Listener]:
    """Every port the programs ``starts`` says this host starts will listen on, HTTPS first."""
    ports, bind = settings.ports, settings.bind
    found: list[Listener] = []
    if starts("haproxy"):
        found += [Listener(ports.https, bind, "HTTPS, HAProxy"), Listener(ports.http, bind, "HTTP, HAProxy"),
                  Listener(ports.stats, bind, "stats, HAProxy")]
        # HAProxy listens for its peers where its own entry says (hostd/ops/peers.py).
        own = next((peer for peer in settings.peers if peer.name == settings.lb_name), None)
        found.append(Listener(own.port, own.host, "peers, HAProxy") if own is not None
                     else Listener(ports.peers, LOOPBACK, "peers, HAProxy"))
    for pool in (*POOLS, "queue"):
        if starts(pool):
            found.append(Listener(getattr(ports, pool), bind, f"{pool} pool"))
    if starts("memcached"):
        found.append(Listener(ports.memcached, bind, "memcached"))
    if starts("sshd"):
        found.append(Listener(ports.ssh, bind, "SSH, sshd"))
    # The gateway's relay listens on a host that stores repositories (hostd/serve/sshgate.py).
    if starts("sshgate") and (settings.runs("git") or settings.runs("hg")):
        found.append(Listener(ports.ssh_relay, bind, "SSH relay, gateway"))
    return found


def taken(wanted: list[Listener]) -> str | None:
    """None when every port of ``wanted`` can be listened on; else one line about the first that cannot."""
    for listener in wanted:
        problem = bind_problem(listener)
        if problem is not None:
            return problem
    return None


def bind_problem(listener: Listener) -> str | None:
    """Why ``listener``'s port cannot be bound now (naming its owner when it is taken), or None.

    The probe binds as the servers do, with ``SO_REUSEADDR`` (a connection
    in TIME_WAIT does not hold a port) and without ``SO_REUSEPORT`` (which
    would share a port with a listener that has it, as HAProxy's do). Any
    listener it would clash with counts: on this address, or on a wildcard.
    """
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((listener.host, listener.port))
        except OSError as error:
            what = f"port {listener.port} ({listener.purpose})"
            if error.errno == errno.EADDRINUSE:
                return f"{what} is taken by {owner(listener.port, listener.host)}"
            return f"{what} cannot be bound on {listener.host}: {error.strerror}"
    return None


def owner(port: int, host: str) -> str:
    """Who listens on ``port`` (``haproxy (pid 4242)``), as far as ``ss`` can tell; else "another process"."""
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ss is None:
        return "another process"
    try:
        result = subprocess.run([ss, "-Htlnp", "sport", "=", f":{port}"], capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "another process"
    return owner_in(result.stdout, port, host) or "another process"


_USER = re.compile(r'users:\(\("((?:[^"\\]|\\.)*)",pid=(\d+)')
_WILDCARDS = frozenset({"*", "0.0.0.0", "::"})


def owner_in(listing: str, port: int, host: str) -> str | None:
    """The process ``ss -Htlnp`` lists on ``port`` where it clashes with ``host``, preferring that address.

    A line's local address is ``addr:port``, ``[addr]:port`` or
    ``addr%iface:port``; ``*``, ``0.0.0.0`` and ``::`` are every address.
    None when no line names a process (``ss`` shows only the processes it
    may see).
    """
    clashing: list[str] = []
    elsewhere: list[str] = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, local_port = fields[3].rpartition(":")
        user = _USER.search(line)
        if local_port != str(port) or user is None:
            continue
        name = f"{user[1]} (pid {user[2]})"
        address = address.strip("[]").partition("%")[0]
        (clashing if _same_or_wildcard(address, host) else elsewhere).append(name)
    found = clashing or elsewhere
    return found[0] if found else None


def _same_or_wildcard(address: str, host: str) -> bool:
    if address in _WILDCARDS or host in _WILDCARDS:
        return True
    try:
        one, other = ipaddress.ip_address(address), ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(one, "ipv4_mapped", None)
    return one == other or mapped == other
