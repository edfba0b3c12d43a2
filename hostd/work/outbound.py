"""Outbound webhook deliveries: POST a JSON body to a URL a repository owner typed in, without SSRF.

The URL is hostile: its host is resolved once, every address judged by :func:`refusal` (loopback, private,
cloud metadata... unless the operator allows the network), and the connection goes to a checked address,
never to a second lookup. One deadline, no redirects, a bounded body; :func:`post` never raises.

Usage::

    payload = json.dumps(event).encode()
    headers = {"X-Hostd-Event": "push", "X-Hostd-Signature-256": sign(secret, payload)}
    response = post("https://ci.example.com/hook", payload, headers, allow=settings.hook_allow_nets)
    if not response.ok:
        log.warning("delivery to %s failed: %s", url, response.error)
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

MAX_URL = 2048
USER_AGENT = "hostd-hookshot/1"
_DEFAULT_PORT = {"http": 80, "https": 443}
# Space, C0 and DEL could split the request line; non-ASCII is refused, not normalized (IDNA and NFKC tricks
# make one string two hosts, a "percent-encoded path, punycode host" is unambiguous).
_UNSAFE = re.compile(r"[^\x21-\x7e]")
# DNS's rule: dot-separated labels of letters, digits and inner hyphens; no underscore, no trailing dot.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")
# A host ending in a number is an IPv4 address to the resolver, and inet_aton reads "127.1", "0x7f000001" and
# "017700000001" as 127.0.0.1: only the strict dotted quad is accepted, so what we check is what gets resolved.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
# Printable ASCII without space or "#": the target goes verbatim into the request line.
_TARGET = re.compile(r"/[\x21\x22\x24-\x7e]*\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# No CR, LF, NUL or other control character: a header value must never start a second header or request.
_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")
# post sets these itself: a second Host, Content-Length or Transfer-Encoding is request smuggling.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "user-agent"})


class HookURLError(ValueError):
    """A hook URL that is malformed or may not be contacted; ``str(error)`` is a one-line reason."""


@dataclass(frozen=True, slots=True)
class HookURL:
    """A syntactically valid hook URL; construction validates every field, so none can smuggle a CR/LF."""

    scheme: str
    host: str
    port: int
    target: str

    def __post_init__(self) -> None:
        if self.scheme not in _DEFAULT_PORT:
            raise HookURLError("URL must start with http:// or https://")
        if not self.host:
            raise HookURLError("URL has no host")
        if ":" in self.host:
            try:  # no zone id ("%eth0"): it names an interface of this machine
                ipaddress.IPv6Address("%" if "%" in self.host else self.host)
            except ValueError:
                raise HookURLError("URL has a malformed IPv6 literal") from None
        elif not _HOSTNAME.match(self.host):
            raise HookURLError("URL host is not a valid host name")
        elif _NUMERIC_LABEL.match(self.host.rsplit(".", 1)[-1]):
            try:
                ipaddress.IPv4Address(self.host)
            except ValueError:
                raise HookURLError("URL host is not a valid IPv4 address (write four decimal numbers)") from None
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise HookURLError("URL port must be 1-65535")
        if len(self.target) > MAX_URL or not _TARGET.match(self.target):
            raise HookURLError("URL path must start with / and be printable ASCII without spaces")

    def __str__(self) -> str:
        return f"{self.scheme}://{_authority(self)}{self.target}"


@dataclass(frozen=True, slots=True)
class Response:
    """The outcome of one delivery; ``error`` is None exactly when the server answered 2xx."""

    status: int | None
    duration: float
    error: str | None
    body: bytes

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def parse_url(url: str) -> HookURL:
    """Parse a hook URL, syntax only (no DNS); raises :class:`HookURLError`.

    http or https, a host (name, dotted-quad IPv4 or bracketed IPv6), an optional port 1-65535, no userinfo,
    no whitespace, control or non-ASCII characters, at most 2048 characters. The fragment is dropped.
    """
    if len(url) > MAX_URL:
        raise HookURLError(f"URL is longer than {MAX_URL} characters")
    if _UNSAFE.search(url):
        raise HookURLError("URL has whitespace, control or non-ASCII characters")
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _DEFAULT_PORT:
        raise HookURLError("URL must start with http:// or https://")
    rest = rest.partition("#")[0]  # the fragment never goes on the wire
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, target = rest[:end], rest[end:]
    # user:password@ would be logged with the URL; "@" is also the classic host-confusion trick.
    if "@" in netloc:
        raise HookURLError("URL has credentials (user@host): put them in the hook's secret instead")
    if netloc.startswith("["):
        host, bracket, port = netloc[1:].partition("]")
        if not bracket or ":" not in host:
            raise HookURLError("URL has a malformed IPv6 literal")
    else:
        host, colon, port = netloc.partition(":")
        port = colon + port
    if port and (not port.startswith(":") or not _PORT.match(port[1:]) or not 1 <= int(port[1:]) <= 65535):
        raise HookURLError("URL port must be 1-65535")
    target = target if target.startswith("/") else "/" + target
    return HookURL(scheme, host.lower(), int(port[1:]) if port else _DEFAULT_PORT[scheme], target)


def _authority(url: HookURL) -> str:
    # As in the URL and the Host header: IPv6 in brackets, the default port left out.
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port == _DEFAULT_PORT[url.scheme] else f"{host}:{url.port}"


# The ranges no hook may reach. First match wins, so narrower networks come before those containing them.
_RANGES = (
    ("an unspecified address", "0.0.0.0/32 ::/128"),
    ("a this-network address", "0.0.0.0/8"),
    ("a private address", "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7"),
    ("a shared (carrier-grade NAT) address", "100.64.0.0/10"),
    ("a loopback address", "127.0.0.0/8 ::1/128"),
    ("a link-local address", "169.254.0.0/16 fe80::/10"),  # includes cloud metadata, 169.254.169.254
    ("a benchmarking address", "198.18.0.0/15 2001:2::/48"),
    ("an IETF protocol assignment address", "192.0.0.0/24 2001::/23"),  # 2001::/32 is Teredo, a tunnel
    ("a documentation address", "192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 2001:db8::/32 3fff::/20"),
    ("a multicast address", "224.0.0.0/4 ff00::/8"),
    ("the broadcast address", "255.255.255.255/32"),
    # 6to4 relay anycast, local-use NAT64, discard-only, deprecated site-local.
    ("a reserved address", "240.0.0.0/4 192.88.99.0/24 64:ff9b:1::/48 100::/64 fec0::/10"),
)
_DENIED: list[tuple[Network, str]] = [(ipaddress.ip_network(n), why) for why, nets in _RANGES for n in nets.split()]
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refusal(address: IPAddress, allow: Sequence[Network]) -> str | None:
    """None when ``address`` may be contacted; else why not, e.g. "127.0.0.1 is a loopback address".

    Only global unicast addresses pass. An IPv6 address that embeds an IPv4 one (mapped, compatible, NAT64,
    6to4) is judged by the IPv4 address its packets end up at. An address inside one of ``allow``
    (HOSTD_HOOK_ALLOW_NETS) is allowed whatever it is.
    """
    # The operator's explicit allow list is the only way into a non-global network.
    if any(address in network for network in allow):
        return None
    embedded = _embedded(address)
    if embedded is not None:
        why = refusal(embedded, allow)
        return None if why is None else f"{address} embeds {why.replace(' is ', ', ', 1)}"
    for network, phrase in _DENIED:
        if address in network:
            return f"{address} is {phrase}"
    # Fail closed: outside 2000::/3 nothing is allocated to the public internet.
    if address.version == 6 and address not in _GLOBAL_UNICAST:
        return f"{address} is a reserved address"
    # A second opinion: whatever a newer Python knows to be non-global is refused too.
    return None if address.is_global else f"{address} is not a global address"


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (packets sent to it reach that address), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    # :: and ::1 lie in ::/96 but are the unspecified and loopback addresses, judged as such.
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


def resolve(url: HookURL, allow: Sequence[Network], *, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """Every address ``url.host`` resolves to (an IP literal is itself), each checked by :func:`refusal`.

    Raises :class:`HookURLError` when resolution fails or when ANY address is refused: a name that mixes a
    public and a private address is refused, since its owner picks which one we would connect to.
    ``resolver`` is called like getaddrinfo, as ``resolver(host, port, type=socket.SOCK_STREAM)``.
    """
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(url.host)]
        named = ""
    except ValueError:
        named = f" ({url.host} resolves to it)"
        try:
            infos = resolver(url.host, url.port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        except (OSError, UnicodeError) as error:
            raise HookURLError(f"cannot resolve {url.host}: {getattr(error, 'strerror', None) or error}") from None
        except (ValueError, IndexError, TypeError):
            raise HookURLError(f"cannot resolve {url.host}: the resolver gave a non-IP address") from None
    if not addresses:
        raise HookURLError(f"cannot resolve {url.host}: no address")
    for address in addresses:
        if (why := refusal(address, allow)) is not None:
            raise HookURLError(f"refused: {why}{named}")
    return addresses


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``body``: X-Hostd-Signature-256, as GitHub's X-Hub-Signature-256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post(url: str | HookURL, body: bytes, headers: Mapping[str, str], *, allow: Sequence[Network] = (),
         timeout: float = 10.0, max_response: int = 65536, resolver: Resolver = socket.getaddrinfo,
         cafile: str | None = None) -> Response:
    """POST ``body`` once. Never raises for network or HTTP trouble: every failure is a Response with ``error``.

    Sends ``headers`` plus Content-Type: application/json (unless given), Content-Length, User-Agent and
    Connection: close. A header name that is not a token, a value with CR, LF or any control or non-ASCII
    character, or a header post sets itself (Host, Content-Length, Transfer-Encoding, Connection, User-Agent)
    gives an error Response before any lookup. No error names the body or a header value. ``timeout`` bounds
    connect, TLS, send and reading the response together; the DNS lookup counts against it but cannot be
    interrupted. A 3xx is a failure (never followed); at most ``max_response`` body bytes are read.
    """
    start = time.monotonic()
    deadline = start + timeout

    def finish(status: int | None, error: str | None, data: bytes = b"") -> Response:
        return Response(status, time.monotonic() - start, None if error is None else _clean(error, headers), data)

    try:
        hook = url if isinstance(url, HookURL) else parse_url(url)
        request = _request(hook, body, headers)
        addresses = resolve(hook, allow, resolver=resolver)
    except HookURLError as error:
        return finish(None, str(error))
    status: int | None = None
    try:
        sock = _connect(addresses, hook.port, deadline)
        try:
            if hook.scheme == "https":
                # Verification is never turned off: the default context checks the chain and the host name and
                # wants TLS 1.2+; SNI and the name checked are the URL's host, not the address connected to.
                sock.settimeout(_remaining(deadline))  # bounds the handshake as a whole
                sock = ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname=hook.host)
            view = memoryview(request)
            while view:  # send() by send(), each with the time left: a slow reader cannot stretch the deadline
                sock.settimeout(_remaining(deadline))
                view = view[sock.send(view[:65536]) :]
            # http.client only parses (with its own header limits); it never resolves nor connects.
            response = http.client.HTTPResponse(cast(socket.socket, _DeadlineReader(sock, deadline)), method="POST")
            response.begin()
            status = response.status
            data, verdict = _read_body(response, max_response), _verdict(response)
        finally:
            sock.close()
    except (OSError, http.client.HTTPException, ValueError) as error:
        return finish(status, _describe(error, timeout))
    return finish(status, verdict, data)


def _request(url: HookURL, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {url.target} HTTP/1.1", f"Host: {_authority(url)}"]
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise HookURLError("a header name is not an HTTP token")
        if name.lower() in _OWN_HEADERS:
            raise HookURLError(f"header {name} is set by the delivery itself")
        if not _VALUE.match(value):
            raise HookURLError(f"header {name} has CR, LF, control or non-ASCII characters")
        lines.append(f"{name}: {value}")
    if not any(name.lower() == "content-type" for name in headers):
        lines.append("Content-Type: application/json")
    lines += [f"Content-Length: {len(body)}", f"User-Agent: {USER_AGENT}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def _remaining(deadline: float) -> float:
    """The time left before the exchange's one deadline: each socket operation gets only this."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _connect(addresses: Sequence[IPAddress], port: int, deadline: float) -> socket.socket:
    """A TCP connection to the first checked address that accepts one, in order."""
    failure = OSError("no address to connect to")
    for address in addresses:
        try:
            sock = socket.socket(socket.AF_INET if address.version == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        except OSError as error:  # no IPv6 here, say: try the next address
            failure = error
            continue
        try:
            sock.settimeout(_remaining(deadline))
            # The address, never the host name: a second lookup could answer differently (DNS rebinding).
            sock.connect((str(address), port))
            return sock
        except OSError as error:
            sock.close()
            if isinstance(error, TimeoutError):
                raise
            failure = error
    raise failure


class _DeadlineReader(io.RawIOBase):
    """The socket as HTTPResponse sees it (it only calls makefile); a trickling server cannot extend the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str, *args: object) -> io.BufferedReader:
        return io.BufferedReader(self)


def _read_body(response: http.client.HTTPResponse, limit: int) -> bytes:
    # At most `limit` bytes: the rest is never read, the connection is closed under it.
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := response.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _verdict(response: http.client.HTTPResponse) -> str | None:
    status, location = response.status, response.getheader("Location")
    if 200 <= status < 300:
        return None
    # Redirects are never followed: the new URL was never checked (a 302 to 169.254.169.254 is the oldest trick).
    if 300 <= status < 400:
        return f"redirect not followed ({status} to {location})" if location else f"redirect not followed ({status})"
    return f"HTTP {status}"


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "server closed the connection without a response"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError):
        return (error.strerror or str(error) or type(error).__name__).lower()
    return f"bad HTTP response: {error or type(error).__name__}"


def _clean(error: str, headers: Mapping[str, str]) -> str:
    """One printable line of at most 300 characters, without any header value a server might echo back."""
    for value in headers.values():
        if len(value) >= 8:  # short values ("1", "push") are no secret, and replacing them mangles the text
            error = error.replace(value, "[redacted]")
    return "".join(ch if ch.isprintable() else "?" for ch in error)[:300]
