"""Part A of the singlemalt benchmark: what the middleware costs per request, in process.

A real :class:`~singlemalt.SingleMalt` is wired the way ``hostd/serve/wsgi.py``
wires it (``classify_git``, a ``Verifier`` with production argon2 cost, a
``VerificationCache`` and a ``LoginThrottle`` over one ``SafeMemcache``,
``ProxyTrust`` for the local HAProxy, INFO logging with hostd's format)
around a trivial app, with a memcached of our own on a free loopback port.
Each case calls the WSGI app directly and times it with
``time.perf_counter_ns``; the overhead is the case's median minus the bare
app's.  The local (in-process) layer of the verification cache is switched
off with ``local_ttl=0`` and the circuit breaker with ``retry_interval=0``:
constructor arguments, nothing is patched.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymemcache.client.base import PooledClient

from hostd.logsetup import FORMAT
from singlemalt import (
    Action,
    Allowed,
    Decision,
    Denied,
    Identity,
    LoginThrottle,
    PasswordHasher,
    ProxyTrust,
    SafeMemcache,
    SingleMalt,
    Target,
    TokenRecord,
    UserRecord,
    VerificationCache,
    Verifier,
    classify_git,
)
from tests.bench.common import BenchError, Memcached, Stats

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

USER = "alice"
PASSWORD = "correct horse battery staple"
#: SafeMemcache's default; a request slower than half of it waited for memcached.
MEMCACHED_TIMEOUT = 0.25
WAITED_NS = int(MEMCACHED_TIMEOUT / 2 * 1e9)
WARMUP = 200


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every case: requests and seconds, whichever comes first."""

    requests: int = 5000
    seconds: float = 5.0
    #: cases that pay an argon2 verification per request (~0.1 s each)
    slow_requests: int = 20
    #: the counterfactual that pays memcached timeouts per request (~0.5 s each)
    hung_requests: int = 5


@dataclass(frozen=True, slots=True)
class Result:
    """One measured case."""

    case: str
    stats: Stats
    slow_per_request: float
    memcached_ops_per_request: float
    waited: int
    note: str = ""


class CountingClient:
    """pymemcache's ``PooledClient``, as ``SafeMemcache`` builds it, counting calls.

    Passed to ``SafeMemcache`` as its documented client factory, so the
    benchmark can report memcached round trips per request.
    """

    def __init__(self, address: str) -> None:
        self.inner = PooledClient(address, connect_timeout=MEMCACHED_TIMEOUT,
                                  timeout=MEMCACHED_TIMEOUT, no_delay=True)
        self.calls = 0

    def get(self, key: str) -> Any:
        self.calls += 1
        return self.inner.get(key)

    def get_many(self, keys: list[str]) -> Any:
        self.calls += 1
        return self.inner.get_many(keys)

    def set(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        self.calls += 1
        return self.inner.set(key, value, expire, noreply=noreply)

    def add(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        self.calls += 1
        return self.inner.add(key, value, expire, noreply=noreply)

    def incr(self, key: str, value: int, noreply: bool = False) -> Any:
        self.calls += 1
        return self.inner.incr(key, value, noreply=noreply)

    def delete(self, key: str, noreply: bool | None = None) -> Any:
        self.calls += 1
        return self.inner.delete(key, noreply=noreply)

    def touch(self, key: str, expire: int = 0, noreply: bool | None = None) -> Any:
        self.calls += 1
        return self.inner.touch(key, expire, noreply=noreply)

    def close(self) -> Any:
        """Close the pool's connections (not a round trip: not counted)."""
        return self.inner.close()


class MemoryStore:
    """A CredentialStore in a dict: one user, no tokens."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.users = {USER: UserRecord(USER, hasher.hash(PASSWORD), 1)}

    def user(self, username: str) -> UserRecord | None:
        return self.users.get(username)

    def token(self, token_id: str) -> TokenRecord | None:
        return None


def authorize(identity: Identity | None, target: Target) -> Decision:
    """Owners may do anything with their repositories; anyone may read demo/*."""
    owner = target.repository.split("/", 1)[0]
    if identity is not None and identity.username == owner:
        return Allowed("owner")
    if owner == "demo" and target.action is Action.READ:
        return Allowed("public repository")
    return Denied("private repository")


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The protected app: as cheap as a WSGI app gets."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


@dataclass
class World:
    """One middleware and the collaborators whose counters a case reads."""

    app: SingleMalt
    verifier: Verifier
    client: CountingClient


class Worlds:
    """Builds middlewares that share the store and hasher but not caches or breakers."""

    def __init__(self, memcached: Memcached, hasher: PasswordHasher) -> None:
        self.address = memcached.address
        self.hasher = hasher
        self.store = MemoryStore(self.hasher)
        self.secret = os.urandom(32)

    def build(self, *, local_ttl: float = 30.0, throttle: bool = True, recheck: float = 2.0,
              retry_interval: float = 10.0) -> World:
        client = CountingClient(self.address)
        memcache = SafeMemcache(lambda: client, timeout=MEMCACHED_TIMEOUT,
                                retry_interval=retry_interval)
        cache = VerificationCache(memcache, self.secret, local_ttl=local_ttl)
        verifier = Verifier(self.store, cache=cache, hasher=self.hasher)
        app = SingleMalt(hello, classify=classify_git, verifier=verifier, authorize=authorize,
                         realm="hostd",
                         throttle=LoginThrottle(memcache, secret=self.secret, recheck=recheck) if throttle else None,
                         proxy=ProxyTrust(["127.0.0.1", "::1"]))
        return World(app, verifier, client)


def request(path: str, *, password: str | None = None, user: str = USER) -> dict[str, Any]:
    """A git info/refs GET as HAProxy forwards it to a pool (with ``user``'s Basic credentials if ``password``)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
        "QUERY_STRING": "service=git-upload-pack", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8001", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "git.example.test", "HTTP_USER_AGENT": "git/2.39.5",
        "HTTP_X_FORWARDED_FOR": "198.51.100.7", "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
    return environ


PUBLIC = request("/demo/public.git/info/refs")
PRIVATE = request(f"/{USER}/private.git/info/refs", password=PASSWORD)


def call(app: WSGIApplication, environ: dict[str, Any]) -> str:
    """One request, its body consumed and closed; returns the status line."""
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)

    body = app(environ, start_response)
    try:
        for _chunk in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[-1] if status else "(no status)"


def fresh(template: dict[str, Any]) -> dict[str, Any]:
    """A per-request copy of ``template``: the middleware writes into its environ."""
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO(b"")
    return environ


def measure(app: WSGIApplication, template: dict[str, Any], *, count: int,
            seconds: float) -> list[int]:
    """Nanoseconds per request for up to ``count`` requests or ``seconds``, whichever first."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while len(samples) < count and clock() < deadline:
        environ = fresh(template)
        start = clock()
        status = call(app, environ)
        samples.append(clock() - start)
        if not status.startswith("200"):
            raise BenchError(f"{template['PATH_INFO']} answered {status!r}, not 200")
    return samples


def case(name: str, template: dict[str, Any], world: World | None, *, count: int,
         seconds: float, warmup: int = 0, note: str = "") -> Result:
    """Measure one case (``world=None``: the bare app) and read its counters."""
    app: WSGIApplication = hello if world is None else world.app
    for _ in range(warmup):
        call(app, fresh(template))
    slow = world.verifier.slow_verifications if world else 0
    calls = world.client.calls if world else 0
    samples = measure(app, template, count=count, seconds=seconds)
    n = len(samples)
    return Result(
        case=name,
        stats=Stats.of(samples),
        slow_per_request=(world.verifier.slow_verifications - slow) / n if world else 0.0,
        memcached_ops_per_request=(world.client.calls - calls) / n if world else 0.0,
        waited=sum(1 for sample in samples if sample > WAITED_NS),
        note=note,
    )


@contextlib.contextmanager
def production_logging() -> Iterator[None]:
    """INFO records formatted as hostd formats them, written to /dev/null."""
    root = logging.getLogger()
    level = root.level
    with open(os.devnull, "w", encoding="utf-8") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def run(limits: Limits = Limits(), *, hasher: PasswordHasher | None = None) -> list[Result]:
    """Every case, in an order that lets the outage cases start from a warm cache.

    ``hasher`` defaults to production argon2id cost; only a smoke test
    passes a cheaper one.
    """
    n, t, warm = limits.requests, limits.seconds, min(WARMUP, limits.requests)
    with production_logging(), Memcached() as memcached:
        worlds = Worlds(memcached, hasher or PasswordHasher())
        hostd_like = worlds.build()
        results = [
            case("bare app (baseline)", PUBLIC, None, count=n, seconds=t, warmup=warm),
            case("anonymous read, public repository", PUBLIC, hostd_like, count=n, seconds=t,
                 warmup=warm, note="no credentials: no throttle, no verification"),
            case("Basic auth, warm cache (in-process layer hit)", PRIVATE, hostd_like, count=n,
                 seconds=t, warmup=warm,
                 note="as hostd wires it; the throttle reads its 2 lock keys once per login per 2 s (recheck)"),
            case("  same, locks read on every request", PRIVATE, worlds.build(recheck=0), count=n,
                 seconds=t, warmup=warm, note="recheck=0: one memcached round trip per request"),
            case("  same, without LoginThrottle", PRIVATE, worlds.build(throttle=False), count=n,
                 seconds=t, warmup=warm, note="what the throttle costs in all"),
            case("Basic auth, in-process layer off (memcached hit)", PRIVATE,
                 worlds.build(local_ttl=0), count=n, seconds=t, warmup=warm, note="local_ttl=0"),
        ]
        # Outage cases: build and warm them while memcached is still up. The
        # throttle reads its locks on every request (recheck=0), so each row
        # shows what one memcached call costs with the breaker on or off.
        hung_breaker, hung_open = worlds.build(recheck=0), worlds.build(recheck=0, retry_interval=0)
        dead_breaker, dead_open = worlds.build(recheck=0), worlds.build(recheck=0, retry_interval=0)
        dead_cold = worlds.build(local_ttl=0)
        for world in (hung_breaker, hung_open, dead_breaker, dead_open, dead_cold):
            call(world.app, fresh(PRIVATE))

        memcached.pause()
        results += [
            case("memcached hung (SIGSTOP), warm in-process layer, breaker on", PRIVATE,
                 hung_breaker, count=n, seconds=t,
                 note="only the first request waits for a timeout; then the breaker is open"),
            case("  same, breaker off (counterfactual)", PRIVATE, hung_open,
                 count=limits.hung_requests, seconds=t,
                 note="retry_interval=0: every request waits for 2 timeouts (connect or read)"),
        ]
        memcached.kill()
        results += [
            case("memcached killed, warm in-process layer, breaker on", PRIVATE, dead_breaker,
                 count=n, seconds=t, note="first request: connection refused, breaker opens"),
            case("  same, breaker off", PRIVATE, dead_open, count=n, seconds=t,
                 note="retry_interval=0: a refused connect per memcached call"),
            case("memcached killed, cold in-process layer (local_ttl=0)", PRIVATE, dead_cold,
                 count=limits.slow_requests, seconds=t,
                 note="nothing remembers a login: one argon2 per request"),
        ]
    return results
