"""Decide who the client is when requests arrive through reverse proxies.

This is the only place singlemalt reads ``X-Forwarded-For`` and
``X-Forwarded-Proto``, and it does so only when the peer that connected to
us (``REMOTE_ADDR``) is one of the proxies you configured; anyone else could
write those headers themselves::

    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8"])
    trust.client(environ)   # Client(address='203.0.113.9', scheme='https')

The client address is the rightmost ``X-Forwarded-For`` entry that is not a
trusted proxy: each proxy appends the address it saw, so entries further
left were written by the client and prove nothing.  The scheme is the
rightmost ``X-Forwarded-Proto`` value, which your front proxy should *set*
(HAProxy: ``http-request set-header X-Forwarded-Proto https if { ssl_fc }``).

An address says little on a shared host: every local process connects from
127.0.0.1, so trusting 127.0.0.1 lets any of them name its own client
address.  When the proxy reaches the app over a unix-domain socket instead,
the socket file's permissions say who may connect, and that is what
``unix_socket=True`` trusts::

    trust = ProxyTrust(unix_socket=True)   # HAProxy: server app1 unix@/run/app.sock

A unix-socket peer is recognised by its empty ``REMOTE_ADDR``: a socket
that HAProxy (or nginx) connects to has no name on the client side, and
that is how gunicorn and other servers report it.  A TCP peer always has an
address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

_SCHEMES: Final = frozenset({"http", "https"})

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Client:
    """The client's address and the scheme it used to reach the front proxy."""

    address: str
    scheme: str


class ProxyTrust:
    """The set of proxies whose forwarding headers are believed.

    ``trusted`` holds IP addresses or CIDR networks; a bad entry raises
    ``ValueError`` at construction, since it is configuration.
    ``unix_socket`` trusts peers connected over a unix-domain socket (see
    the module docstring).  The default trusts nobody, which is right for a
    server that clients reach directly.
    """

    def __init__(self, trusted: Iterable[str] = (), *, unix_socket: bool = False) -> None:
        self._networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)
        self._unix_socket = unix_socket

    def __repr__(self) -> str:
        unix = ", unix_socket=True" if self._unix_socket else ""
        return f"ProxyTrust({[str(network) for network in self._networks]!r}{unix})"

    def client(self, environ: WSGIEnvironment) -> Client:
        """The client behind the trusted proxies, or the peer itself."""
        peer = str(environ.get("REMOTE_ADDR", ""))
        scheme = str(environ.get("wsgi.url_scheme", "http"))
        if not (self._unix_socket and peer == "") and not self._trusts(peer):
            return Client(peer, scheme)
        return Client(
            self._forwarded_for(peer, str(environ.get("HTTP_X_FORWARDED_FOR", ""))),
            _forwarded_proto(str(environ.get("HTTP_X_FORWARDED_PROTO", "")), scheme),
        )

    def _trusts(self, address: str) -> bool:
        parsed = _parse(address)
        return parsed is not None and any(parsed in network for network in self._networks)

    def _forwarded_for(self, peer: str, header: str) -> str:
        client = peer
        for entry in reversed(header.split(",")):
            parsed = _parse(entry.strip())
            if parsed is None:
                # Garbage can only come from the client or a broken proxy:
                # stop at the nearest hop we know to be a real address.
                break
            client = str(parsed)
            if not any(parsed in network for network in self._networks):
                break
        return client


#: Trust no proxy: the peer is the client.  The default of the middleware.
NO_PROXIES: Final = ProxyTrust()


def _parse(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_proto(header: str, default: str) -> str:
    value = header.rsplit(",", 1)[-1].strip().lower()
    return value if value in _SCHEMES else default
