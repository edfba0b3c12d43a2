"""hostd-ssh (the C program sshd starts) and the gateway it hands sessions to, over a real unix socket."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.ops.sshd import SOURCE
from hostd.ssh.gateway import Gateway


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("helper") / "hostd-ssh"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)], check=True)
    return binary


class Recorder:
    """Handlers that remember what they were given and answer like the real ones would."""

    def __init__(self) -> None:
        self.sessions: list[tuple[str, ...]] = []
        self.keys: list[tuple[str, str]] = []

    def session(self, fields: tuple[str, ...], stdin: int, stdout: int, stderr: int) -> int:
        self.sessions.append(fields)
        data = os.read(stdin, 100)
        os.write(stdout, b"out:" + data)
        os.write(stderr, b"err line\n")
        return 7

    def key(self, fingerprint: str, connection: str) -> str:
        self.keys.append((fingerprint, connection))
        return 'restrict,command="key x" ssh-ed25519 AAAA\n' if fingerprint == "SHA256:known" else ""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, Recorder]]:
    recorder = Recorder()
    gateway = Gateway(tmp_path / "ssh.sock", sessions=recorder.session, keys=recorder.key)
    gateway.listen()
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    yield gateway, recorder
    gateway.close()
    thread.join(10)


def _session(helper: Path, gateway: Gateway, stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    environ = {"HOSTD_SSH_SOCKET": str(gateway.path), "SSH_CONNECTION": "192.0.2.7 40000 127.0.0.1 2222", **env}
    return subprocess.run([str(helper), "-c", "key SHA256:abc"], input=stdin, capture_output=True, env=environ,
                          timeout=30)


def test_a_session_is_handed_over_with_its_descriptors(helper: Path, gateway: tuple[Gateway, Recorder]) -> None:
    result = _session(helper, gateway[0], b"hello", SSH_ORIGINAL_COMMAND="git-upload-pack 'a/b.git'",
                      GIT_PROTOCOL="version=2")
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out:hello", b"err line\n")
    assert gateway[1].sessions == [("SHA256:abc", "git-upload-pack 'a/b.git'", "version=2",
                                    "192.0.2.7 40000 127.0.0.1 2222")]


def test_the_socket_is_for_the_stacks_account_only(gateway: tuple[Gateway, Recorder]) -> None:
    """Whoever can connect can claim any key's session: the socket is 0600 (in the 0700 run directory)."""
    assert stat.S_IMODE(gateway[0].path.stat().st_mode) == 0o600


def test_a_key_lookup_prints_the_gateways_line(helper: Path, gateway: tuple[Gateway, Recorder]) -> None:
    known = subprocess.run([str(helper), "keys", str(gateway[0].path), "SHA256:known"], capture_output=True,
                           timeout=30)
    unknown = subprocess.run([str(helper), "keys", str(gateway[0].path), "SHA256:other"], capture_output=True,
                             timeout=30)
    assert (known.returncode, known.stdout) == (0, b'restrict,command="key x" ssh-ed25519 AAAA\n')
    assert (unknown.returncode, unknown.stdout) == (0, b"")
    # Started by this test, not by sshd: its parent holds no TCP connection, so the address is empty.
    assert [fingerprint for fingerprint, _ in gateway[1].keys] == ["SHA256:known", "SHA256:other"]


def test_without_a_gateway_the_client_is_told_to_retry(helper: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(helper), "-c", "key SHA256:abc"], capture_output=True, timeout=30,
                            env={"HOSTD_SSH_SOCKET": str(tmp_path / "absent.sock")})
    assert result.returncode == 1
    assert result.stderr == b"hostd: the SSH service is unavailable; try again shortly\n"


@pytest.mark.parametrize("argv", [[], ["-c", "id"], ["-c", "ls; key x"], ["-i"], ["keys"], ["-c"]])
def test_as_a_login_shell_it_runs_nothing_else(helper: Path, argv: list[str], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = subprocess.run([str(helper), *argv], capture_output=True, timeout=30,
                            env={"HOSTD_SSH_SOCKET": str(tmp_path / "absent.sock"), "MARKER": str(marker)})
    assert result.returncode == 1 and not marker.exists()
    assert result.stderr in (b"hostd: this account has no shell; use git or hg over SSH\n",
                             b"hostd: the SSH service is unavailable; try again shortly\n")


def test_a_gateway_that_dies_mid_session_is_reported(helper: Path, tmp_path: Path) -> None:
    """The client learns that the session's outcome is unknown, never a false success."""
    path = tmp_path / "ssh.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def die() -> None:
        conn, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        for fd in fds:
            os.close(fd)
        conn.close()  # as a killed gateway's kernel would

    thread = threading.Thread(target=die, daemon=True)
    thread.start()
    try:
        result = subprocess.run([str(helper), "-c", "key SHA256:abc"], capture_output=True, timeout=30,
                                env={"HOSTD_SSH_SOCKET": str(path)})
    finally:
        thread.join(10)
        listener.close()
    assert result.returncode == 255
    assert b"stopped during this session; check whether it completed" in result.stderr


def test_a_malformed_message_is_refused_without_a_traceback(gateway: tuple[Gateway, Recorder]) -> None:
    for junk in (b"\x00\x00\x00\x05K\x00a\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x02Z\x00"):
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(gateway[0].path))
            client.sendall(junk)
            client.shutdown(socket.SHUT_WR)
            assert client.recv(100) == b""
    assert gateway[1].keys == [] and gateway[1].sessions == []
