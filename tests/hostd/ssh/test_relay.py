"""The relay's far end: only a header signed with the installation's secret, fresh and unseen, gets a session."""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hostd.names import RepoName
from hostd.ssh.command import SshCommand
from hostd.ssh.relay import RelayServer, sign
from hostd.ssh.session import Descriptors
from singlemalt import Identity

SECRET = b"s" * 32


class FakeSessions:
    """Stands in for :class:`hostd.ssh.session.Sessions`: echoes what it got, like a served session."""

    def __init__(self) -> None:
        self.served: list[tuple[Identity, RepoName | None, SshCommand, str]] = []

    def serve_relayed(self, identity: Identity, deploy: RepoName | None, cmd: SshCommand, protocol: str,
                      address: str, fds: Descriptors) -> int:
        self.served.append((identity, deploy, cmd, address))
        data = os.read(fds.stdin, 100)
        os.write(fds.stdout, b"out:" + data)
        os.write(fds.stderr, b"remote line\n")
        return 3


@pytest.fixture
def server() -> Iterator[tuple[RelayServer, FakeSessions, int]]:
    sessions = FakeSessions()
    relay = RelayServer(("127.0.0.1", 0), sessions, SECRET)  # type: ignore[arg-type]
    port = relay.address[1]
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    yield relay, sessions, port
    relay.close()
    thread.join(10)


def _claim(**changes: Any) -> dict[str, Any]:
    claim = {"user": "alice", "method": "ssh-key", "scope": "write", "key": "7", "deploy": None,
             "command": "git-upload-pack", "path": "alice/proj.git", "protocol": "version=2",
             "client": "192.0.2.9", "time": time.time(), "nonce": os.urandom(8).hex()}
    claim.update(changes)
    return claim


def _talk(port: int, header: bytes, stdin: bytes = b"hi") -> list[tuple[bytes, bytes]]:
    """The frames the far end sends back; none when it closes the connection (a reset included)."""
    frames = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(header + stdin)
            conn.shutdown(socket.SHUT_WR)
            reader = conn.makefile("rb")
            while head := reader.read(5):
                kind, length = struct.unpack(">cI", head)
                frames.append((kind, reader.read(length)))
        except OSError as error:
            # The far end closed first: a reset, or (a reset already seen by the kernel) shutdown's ENOTCONN.
            if error.errno not in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE):
                raise
    return frames


def test_a_signed_session_is_served_and_its_output_framed(server: tuple[RelayServer, FakeSessions, int]) -> None:
    frames = _talk(server[2], sign(SECRET, _claim()))
    assert dict(frames) == {b"o": b"out:hi", b"e": b"remote line\n", b"x": b"\x03"}
    identity, deploy, cmd, address = server[1].served[0]
    assert (identity.username, deploy, cmd.service, cmd.path, address) == (
        "alice", None, "git-upload-pack", "alice/proj.git", "192.0.2.9")


@pytest.mark.parametrize("header", [
    sign(b"another installation's secret", _claim()),
    sign(SECRET, _claim(time=time.time() - 120)),
    b"not a header\n",
    sign(SECRET, _claim())[:-10] + b"0123456789",
])
def test_forged_stale_or_malformed_headers_get_nothing(server: tuple[RelayServer, FakeSessions, int],
                                                       header: bytes) -> None:
    assert _talk(server[2], header) == []
    assert server[1].served == []


def test_a_replayed_header_is_refused(server: tuple[RelayServer, FakeSessions, int]) -> None:
    header = sign(SECRET, _claim())
    assert _talk(server[2], header)
    assert _talk(server[2], header) == []
    assert len(server[1].served) == 1


def test_a_command_the_parser_refuses_never_reaches_a_session(server: tuple[RelayServer, FakeSessions, int]) -> None:
    frames = _talk(server[2], sign(SECRET, _claim(path="../../etc/passwd")))
    assert (b"x", b"\x01") in frames and server[1].served == []
