"""Sessions for another shard's repository: the bytes relayed to that shard's gateway, never translated.

A load balancer's sshd hands every session to its own gateway, which
decides it (:mod:`hostd.ssh.session`). When the repository lives on
another shard, :class:`Relay` opens a TCP connection to the gateway of a
host of that shard (the address of a server of the shard's pool, as the
``shards`` table lists it, at :attr:`~hostd.settings.Ports.ssh_relay`) and
sends one signed header, then the client's bytes as they come. The far end
(:class:`RelayServer`) checks the signature, decides again from its own
records (a key or grant removed meanwhile is refused there too), serves the
session locally, and sends back the output in frames: stdout, stderr, and
the exit status last, which the client's ``ssh`` exits with. git and hg
see the same protocol stream they would see on the shard itself.

The header is signed with the installation's secret (HMAC-SHA256, the
``secret`` file every host of one installation shares), carries the time
and a nonce, and is refused when older than :data:`MAX_AGE` or seen before:
only another gateway of this installation can hand over a session.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections import OrderedDict
from typing import Any, Final

from hostd.names import RepoName, parse_repo_name
from hostd.ssh import command
from hostd.ssh.session import Descriptors, Refusal, Sessions
from hostd.store.accounts import Repo
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.shards import Shards
from singlemalt import Identity, Scope

log = logging.getLogger(__name__)

MAX_AGE: Final = 30.0
MAX_HEADER: Final = 8192
CHUNK: Final = 1 << 16
_STDOUT, _STDERR, _EXIT = b"o", b"e", b"x"
_FRAME: Final = struct.Struct(">cI")
BROKEN: Final = 255


class Relay:
    """Serve a decided session on the shard holding its repository (the near end)."""

    def __init__(self, db: Database, secret: bytes, *, port: int, timeout: float = 3.0) -> None:
        self.shards = Shards(db)
        self.secret = secret
        self.port = port
        self.timeout = timeout

    def __call__(self, repo: Repo, identity: Identity, deploy: RepoName | None, cmd: command.SshCommand,
                 protocol: str, address: str, fds: Descriptors) -> int:
        header = sign(self.secret, {
            "user": identity.username, "method": identity.method, "scope": identity.scope.value,
            "key": identity.token_id, "deploy": None if deploy is None else str(deploy),
            "command": cmd.service, "path": cmd.path,
            "protocol": protocol, "client": address, "time": time.time(), "nonce": secrets.token_hex(16),
        })
        sock = self._connect(repo)
        with sock:
            sock.sendall(header)
            # The pump reads the client until sshd closes its stdin, which can be after this session's
            # descriptors are closed and their numbers reused: it reads from a copy of its own.
            stdin = os.dup(fds.stdin)
            pump = threading.Thread(target=_copy_in, args=(stdin, sock), daemon=True, name="ssh-relay-in")
            pump.start()
            return _copy_out(sock, fds)

    def _connect(self, repo: Repo) -> socket.socket:
        try:
            shard = self.shards.get(repo.shard)
        except (DatabaseUnavailable, LookupError) as error:
            raise Refusal(f"the storage shard of {repo.ref} cannot be found; try again shortly",
                          reason=f"shard {repo.shard}: {error}") from None
        servers = shard.hg_servers + shard.git_servers if repo.vcs == "hg" else shard.git_servers + shard.hg_servers
        hosts = dict.fromkeys(address.rpartition(":")[0].strip("[]") for address in servers)
        for host in hosts:
            try:
                sock = socket.create_connection((host, self.port), timeout=self.timeout)
            except OSError as error:
                log.warning("ssh relay to %s:%d (shard %s) failed: %s", host, self.port, repo.shard, error)
                continue
            # The timeout bounds the connect only: a session may be silent for
            # long (a client thinking, a server indexing a large push).
            sock.settimeout(None)
            return sock
        raise Refusal(f"the storage shard holding {repo.ref} ({repo.shard}) is unavailable; try again shortly",
                      reason=f"no relay of shard {repo.shard} answered")


class RelayServer:
    """Accept sessions handed over by other gateways and serve them here (the far end)."""

    def __init__(self, address: tuple[str, int], sessions: Sessions, secret: bytes) -> None:
        self.sessions = sessions
        self.secret = secret
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._listener = socket.create_server(address, reuse_port=False)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port chosen by the system when it was given 0)."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer[0]), daemon=True, name="ssh-relayed").start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        with conn:
            conn.settimeout(10)
            try:
                claim = self._verify(_read_line(conn))
            except ValueError as error:
                log.warning("ssh relay from %s refused: %s", peer, error)
                return
            conn.settimeout(None)
            stdin_r, stdin_w = os.pipe()
            stdout_r, stdout_w = os.pipe()
            stderr_r, stderr_w = os.pipe()
            # stdout and stderr frames are sent by two threads: one frame at a time, whole.
            sending = threading.Lock()
            feeders = [threading.Thread(target=_copy_to_fd, args=(conn, stdin_w), daemon=True),
                       threading.Thread(target=_frames_from_fd, args=(stdout_r, conn, _STDOUT, sending),
                                        daemon=True),
                       threading.Thread(target=_frames_from_fd, args=(stderr_r, conn, _STDERR, sending),
                                        daemon=True)]
            for thread in feeders:
                thread.start()
            status = BROKEN
            try:
                status = self._session(claim, Descriptors(stdin_r, stdout_w, stderr_w))
            finally:
                for fd in (stdin_r, stdout_w, stderr_w):
                    os.close(fd)
                feeders[1].join()
                feeders[2].join()
                with contextlib.suppress(OSError):
                    conn.sendall(_FRAME.pack(_EXIT, 1) + bytes([status & 0xFF]))
                    conn.shutdown(socket.SHUT_RDWR)

    def _session(self, claim: dict[str, Any], fds: Descriptors) -> int:
        identity = Identity(str(claim["user"]), str(claim["method"]), Scope(claim["scope"]),
                            token_id=claim.get("key"))
        deploy = parse_repo_name(str(claim["deploy"])) if claim.get("deploy") else None
        try:
            cmd = command.parse(_command_text(claim))
        except command.Refused as error:
            _write_all(fds.stderr, f"hostd: {error}\n".encode())
            return 1
        return self.sessions.serve_relayed(identity, deploy, cmd, str(claim.get("protocol", "")),
                                           str(claim.get("client", "")), fds)

    def _verify(self, line: bytes) -> dict[str, Any]:
        try:
            payload, mac = line.rstrip(b"\n").split(b" ")
            expected = hmac.new(self.secret, payload, hashlib.sha256).hexdigest().encode()
            claim = json.loads(base64.b64decode(payload, validate=True))
        except (ValueError, TypeError):
            raise ValueError("malformed header") from None
        if not hmac.compare_digest(mac, expected) or not isinstance(claim, dict):
            raise ValueError("bad signature")
        if abs(time.time() - float(claim.get("time", 0))) > MAX_AGE:
            raise ValueError("header too old")
        nonce = str(claim.get("nonce"))
        with self._lock:
            now = time.monotonic()
            while self._seen and now - next(iter(self._seen.values())) > 2 * MAX_AGE:
                self._seen.popitem(last=False)
            if nonce in self._seen:
                raise ValueError("header replayed")
            self._seen[nonce] = now
        return claim


def sign(secret: bytes, claim: dict[str, Any]) -> bytes:
    """The header line: base64 JSON, a space, its HMAC-SHA256 in hex."""
    payload = base64.b64encode(json.dumps(claim, separators=(",", ":")).encode())
    return payload + b" " + hmac.new(secret, payload, hashlib.sha256).hexdigest().encode() + b"\n"


def _command_text(claim: dict[str, Any]) -> str:
    path = str(claim["path"])
    if claim["command"] == "hg-serve":
        return f"hg -R {path} serve --stdio"
    return f"{claim['command']} '{path}'"


def _read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        data = conn.recv(1)
        if not data or len(line) >= MAX_HEADER:
            raise ValueError("no header")
        line += data
    return line


def _copy_in(fd: int, sock: socket.socket) -> None:
    """The client's bytes to the far end; its end-of-file as a half-close. Closes ``fd``."""
    try:
        while data := os.read(fd, CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the session is over, or the far end is gone
    finally:
        os.close(fd)


def _copy_out(sock: socket.socket, fds: Descriptors) -> int:
    """The far end's frames to the client's stdout and stderr; its exit status."""
    reader = sock.makefile("rb")
    while True:
        head = reader.read(_FRAME.size)
        if len(head) < _FRAME.size:
            break
        kind, length = _FRAME.unpack(head)
        data = reader.read(length)
        if len(data) < length:
            break
        if kind == _EXIT:
            return data[0]
        with contextlib.suppress(OSError):
            _write_all(fds.stdout if kind == _STDOUT else fds.stderr, data)
    with contextlib.suppress(OSError):
        os.write(fds.stderr, b"hostd: the connection to the storage shard broke; check whether it completed\n")
    return BROKEN


def _copy_to_fd(sock: socket.socket, fd: int) -> None:
    try:
        while data := sock.recv(CHUNK):
            _write_all(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def _frames_from_fd(fd: int, sock: socket.socket, kind: bytes, sending: threading.Lock) -> None:
    try:
        while data := os.read(fd, CHUNK):
            # sendall may write a frame in parts when the socket's buffer is
            # full: without the lock, the other stream's frame could land in
            # the middle and the near end would read garbage as a header.
            with sending:
                sock.sendall(_FRAME.pack(kind, len(data)) + data)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
