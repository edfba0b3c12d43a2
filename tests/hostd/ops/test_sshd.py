"""sshd's files, as hostd/ops/sshd.py writes them, checked by the real sshd; and its health check."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.ops import sshd
from hostd.settings import Settings
from tests.ports import free_ports


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    ssh, relay = free_ports(2)
    data = tmp_path / "var"
    (data / "run").mkdir(parents=True, mode=0o700)
    return Settings.from_env({"HOSTD_DATA": str(data), "HOSTD_SSH_PORT": str(ssh),
                              "HOSTD_SSH_RELAY_PORT": str(relay)})


def test_prepare_writes_what_the_real_sshd_accepts(settings: Settings) -> None:
    sshd.prepare(settings)  # runs `sshd -t` on the result itself, and raises if sshd refuses it
    config = (settings.run_dir / "sshd_config").read_text()
    for line in ("AuthorizedKeysFile none", "DisableForwarding yes", "PermitTTY no", "AcceptEnv GIT_PROTOCOL",
                 "PasswordAuthentication no", "AuthenticationMethods publickey", "AllowUsers git hg"):
        assert line in config.splitlines()
    assert f"AuthorizedKeysCommand {sshd.helper()} keys {settings.ssh_socket} %f" in config
    accounts = (settings.run_dir / "ssh-passwd").read_text().splitlines()
    owner = sshd.owner(settings)
    assert accounts[:2] == [f"{name}:x:{owner.pw_uid}:{owner.pw_gid}:hostd {name}:{sshd.key_dir(settings)}:"
                            f"{sshd.helper()}" for name in ("git", "hg")]
    assert sum(line.startswith(("git:", "hg:")) for line in accounts) == 2
    assert len(sshd.fingerprints(settings)) == 3


def test_host_keys_are_made_once_and_kept(settings: Settings) -> None:
    sshd.prepare(settings)
    first = sshd.fingerprints(settings)
    sshd.prepare(settings)
    assert sshd.fingerprints(settings) == first


@pytest.fixture
def impostor(settings: Settings) -> Iterator[None]:
    """Another program on our SSH port that greets like sshd, and a gateway socket that accepts."""
    gate = socket.socket(socket.AF_UNIX)
    gate.bind(str(settings.ssh_socket))
    gate.listen(8)
    listener = socket.create_server((settings.bind, settings.ports.ssh))
    stop = threading.Event()

    def greet() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_someone_else\r\n")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)
    listener.close()
    gate.close()


def test_a_port_taken_by_another_sshd_is_not_mistaken_for_ours(settings: Settings, impostor: None) -> None:
    problem = sshd.health_problem(settings, sshd_runs=True)
    assert problem is not None and f"is port {settings.ports.ssh} taken" in problem


def test_the_gateway_is_checked_even_where_sshd_does_not_run(settings: Settings) -> None:
    problem = sshd.health_problem(settings, sshd_runs=False)
    assert problem is not None and "SSH gateway" in problem

