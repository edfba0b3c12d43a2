"""ProxyTrust: whose X-Forwarded-* headers are believed, and which entry is the client."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from singlemalt.proxy import NO_PROXIES, Client, ProxyTrust

TRUST = ProxyTrust(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])


def env(peer: str | None, xff: str | None = None, proto: str | None = None,
        scheme: str = "http") -> dict[str, Any]:
    environ: dict[str, Any] = {"wsgi.url_scheme": scheme}
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    if xff is not None:
        environ["HTTP_X_FORWARDED_FOR"] = xff
    if proto is not None:
        environ["HTTP_X_FORWARDED_PROTO"] = proto
    return environ


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(env("203.0.113.9", "1.2.3.4", "https"), Client("203.0.113.9", "http"),
                     id="untrusted-peer-headers-ignored"),
        pytest.param(env("127.0.0.1", "203.0.113.9", "https"), Client("203.0.113.9", "https"),
                     id="trusted-peer"),
        pytest.param(env("10.1.2.3", "203.0.113.9"), Client("203.0.113.9", "http"),
                     id="trusted-cidr"),
        pytest.param(env("127.0.0.1", "6.6.6.6, 203.0.113.9"), Client("203.0.113.9", "http"),
                     id="client-prepended-spoof"),
        pytest.param(env("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.5"),
                     Client("203.0.113.9", "http"), id="skips-trusted-hops"),
        pytest.param(env("127.0.0.1", "10.0.0.7, 10.0.0.5"), Client("10.0.0.7", "http"),
                     id="all-trusted-leftmost"),
        pytest.param(env("127.0.0.1", "garbage, 10.0.0.5"), Client("10.0.0.5", "http"),
                     id="garbage-stops-at-nearest-hop"),
        pytest.param(env("127.0.0.1", "203.0.113.9, garbage"), Client("127.0.0.1", "http"),
                     id="garbage-from-proxy-keeps-peer"),
        pytest.param(env("127.0.0.1", "203.0.113.9:5555"), Client("127.0.0.1", "http"),
                     id="port-is-not-an-address"),
        pytest.param(env("127.0.0.1"), Client("127.0.0.1", "http"), id="trusted-no-headers"),
        pytest.param(env("127.0.0.1", ""), Client("127.0.0.1", "http"), id="empty-xff"),
        pytest.param(env("127.0.0.1", "2001:DB8:0::1"), Client("2001:db8::1", "http"),
                     id="ipv6-trusted-entry-normalised"),
        pytest.param(env("127.0.0.1", "2002::1"), Client("2002::1", "http"), id="ipv6-client"),
        pytest.param(env("::ffff:127.0.0.1", "203.0.113.9"), Client("203.0.113.9", "http"),
                     id="ipv4-mapped-peer"),
        pytest.param(env("127.0.0.1", "::ffff:203.0.113.9"), Client("203.0.113.9", "http"),
                     id="ipv4-mapped-entry"),
        pytest.param(env("2001:db8::5", "203.0.113.9"), Client("203.0.113.9", "http"),
                     id="ipv6-peer"),
        pytest.param(env("127.0.0.1", proto="HTTPS"), Client("127.0.0.1", "https"),
                     id="proto-case"),
        pytest.param(env("127.0.0.1", proto="https, http"), Client("127.0.0.1", "http"),
                     id="proto-rightmost"),
        pytest.param(env("127.0.0.1", proto="gopher", scheme="https"),
                     Client("127.0.0.1", "https"), id="proto-unknown-keeps-scheme"),
        pytest.param(env("127.0.0.1", proto=""), Client("127.0.0.1", "http"), id="proto-empty"),
        pytest.param(env("unix:/run/sock", "203.0.113.9"), Client("unix:/run/sock", "http"),
                     id="non-ip-peer-untrusted"),
        pytest.param(env(None, "203.0.113.9"), Client("", "http"), id="no-remote-addr"),
    ],
)
def test_client(environ: dict[str, Any], expected: Client) -> None:
    assert TRUST.client(environ) == expected


def test_default_trusts_nobody() -> None:
    assert NO_PROXIES.client(env("127.0.0.1", "1.2.3.4", "https")) == Client("127.0.0.1", "http")
    assert ProxyTrust().client(env("127.0.0.1", "1.2.3.4")) == Client("127.0.0.1", "http")


def test_bad_configuration_fails_fast() -> None:
    with pytest.raises(ValueError):
        ProxyTrust(["not-an-ip"])


def test_repr_lists_networks() -> None:
    assert repr(ProxyTrust(["127.0.0.1"])) == "ProxyTrust(['127.0.0.1/32'])"


def _entries(xff: str) -> set[str]:
    found = set()
    for entry in xff.split(","):
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            continue
        mapped = getattr(address, "ipv4_mapped", None)
        found.add(str(mapped or address))
    return found


@settings(database=None, deadline=None)
@given(peer=st.sampled_from(["127.0.0.1", "10.9.9.9", "203.0.113.1", "", "x"]),
       xff=st.one_of(st.text(max_size=80),
                     st.lists(st.ip_addresses().map(str), max_size=4).map(", ".join)),
       proto=st.text(max_size=20))
def test_never_raises_and_never_invents(peer: str, xff: str, proto: str) -> None:
    client = TRUST.client(env(peer, xff, proto))
    assert client.scheme in ("http", "https")
    if peer in ("203.0.113.1", "", "x"):
        assert client == Client(peer, "http")
    else:
        assert client.address == peer or client.address in _entries(xff)


UNIX = ProxyTrust(unix_socket=True)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(env("", "203.0.113.9", "https"), Client("203.0.113.9", "https"), id="unix-peer-trusted"),
        pytest.param(env(None, "203.0.113.9"), Client("203.0.113.9", "http"), id="no-remote-addr-is-unix"),
        pytest.param(env("", "6.6.6.6, 203.0.113.9"), Client("203.0.113.9", "http"), id="unix-rightmost-entry"),
        # Every local process connects over TCP from 127.0.0.1: that proves nothing.
        pytest.param(env("127.0.0.1", "203.0.113.9", "https"), Client("127.0.0.1", "http"),
                     id="loopback-tcp-peer-not-trusted"),
        pytest.param(env("::1", "203.0.113.9"), Client("::1", "http"), id="loopback-v6-not-trusted"),
        pytest.param(env("", ""), Client("", "http"), id="unix-without-xff"),
    ],
)
def test_unix_socket_peers_are_trusted_and_nobody_else(environ: dict[str, Any], expected: Client) -> None:
    assert UNIX.client(environ) == expected


def test_unix_socket_trust_is_off_by_default() -> None:
    assert ProxyTrust(["127.0.0.1"]).client(env("", "203.0.113.9")) == Client("", "http")
    assert repr(UNIX) == "ProxyTrust([], unix_socket=True)"
