"""The ports a stack listens on, checked before it starts: free, or taken by a process named with its pid."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.ops import listeners
from hostd.ops.listeners import Listener
from hostd.settings import Settings, vars_of

REMOTE = {"HOSTD_DATABASE_URL": "postgresql://hostd:pw@10.0.0.10/hostd", "HOSTD_MEMCACHED": "10.0.0.21:11211"}


def test_a_host_with_every_role_listens_on_every_port_once(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path)})
    found = listeners.listeners(settings, starts=settings.runs)
    assert sorted(listener.port for listener in found) == sorted(vars_of(settings.ports))
    assert found[0] == Listener(settings.ports.https, "127.0.0.1", "HTTPS, HAProxy")
    assert Listener(settings.ports.git, "127.0.0.1", "git pool") in found


@pytest.mark.parametrize(("roles", "purposes"), [
    ("web", ["web pool"]),
    ("storage", ["git pool", "hg pool", "queue pool", "SSH relay, gateway"]),
    ("cache", ["memcached"]),
], ids=["web", "storage", "cache"])
def test_a_host_listens_on_the_ports_of_its_roles(tmp_path: Path, roles: str, purposes: list[str]) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": roles, **REMOTE})
    assert [listener.purpose for listener in listeners.listeners(settings, starts=settings.runs)] == purposes


def test_a_program_that_will_not_start_is_not_asked_about(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path)})
    found = listeners.listeners(settings, starts=lambda program: program != "sshd" and settings.runs(program))
    assert settings.ports.ssh not in [listener.port for listener in found]


def test_a_balancer_among_peers_listens_for_them_where_its_entry_says(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOSTD_DATA": str(tmp_path), "HOSTD_ROLES": "balancer", "HOSTD_LB_NAME": "lb2",
                                  "HOSTD_PEERS": "lb1=10.0.0.1:9405,lb2=10.0.0.2:9406", **REMOTE})
    found = listeners.listeners(settings, starts=settings.runs)
    assert Listener(9406, "10.0.0.2", "peers, HAProxy") in found
    assert settings.ports.peers not in [listener.port for listener in found]


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket of this process, listening on a free port of every IPv4 address."""
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        yield server


def test_a_taken_port_is_named_with_what_it_is_for_and_who_holds_it(listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    # Taken on the wildcard address is taken on ours.
    problem = listeners.taken([Listener(port, "127.0.0.1", "HTTPS, HAProxy")])
    assert problem is not None and "\n" not in problem
    assert re.fullmatch(rf"port {port} \(HTTPS, HAProxy\) is taken by \S.* \(pid {os.getpid()}\)", problem), problem


def test_free_ports_pass_and_the_first_taken_one_is_named(listening: socket.socket) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        free = other.getsockname()[1]
    taken = listening.getsockname()[1]
    assert listeners.taken([Listener(free, "127.0.0.1", "git pool")]) is None
    problem = listeners.taken([Listener(free, "127.0.0.1", "git pool"), Listener(taken, "127.0.0.1", "hg pool")])
    assert problem is not None and problem.startswith(f"port {taken} (hg pool) is taken by ")


def test_without_ss_the_owner_is_another_process(listening: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hostd.ops.listeners.shutil.which", lambda *args, **kwargs: None)
    port = listening.getsockname()[1]
    assert listeners.taken([Listener(port, "127.0.0.1", "memcached")]) == \
        f"port {port} (memcached) is taken by another process"


def test_an_address_not_on_this_host_is_named_too() -> None:
    problem = listeners.bind_problem(Listener(8443, "192.0.2.1", "HTTPS, HAProxy"))  # TEST-NET-1
    assert problem is not None and problem.startswith("port 8443 (HTTPS, HAProxy) cannot be bound on 192.0.2.1: ")


SS = """\
LISTEN 0      4096       10.0.0.5:8443      0.0.0.0:*    users:(("nginx",pid=77,fd=6))
LISTEN 0      4096      127.0.0.1:8443      0.0.0.0:*    users:(("haproxy",pid=4242,fd=7),("haproxy",pid=4243,fd=7))
LISTEN 0      128               *:8101            *:*    users:(("gunicorn",pid=51,fd=5))
LISTEN 0      128            [::]:8102         [::]:*    users:(("python3",pid=52,fd=5))
LISTEN 0      128    127.0.0.1%lo:8103      0.0.0.0:*    users:(("memcached",pid=53,fd=26))
LISTEN 0      128       127.0.0.1:8104      0.0.0.0:*
LISTEN 0      128    [::ffff:127.0.0.1]:8105   *:*    users:(("sshd",pid=54,fd=3))
"""


@pytest.mark.parametrize(("port", "host", "owner"), [
    (8443, "127.0.0.1", "haproxy (pid 4242)"),  # the clashing address first, another address after
    (8443, "0.0.0.0", "nginx (pid 77)"),
    (8443, "192.0.2.9", "nginx (pid 77)"),  # none clashes (a wildcard elsewhere): any is better than none
    (8101, "127.0.0.1", "gunicorn (pid 51)"),
    (8102, "127.0.0.1", "python3 (pid 52)"),
    (8103, "127.0.0.1", "memcached (pid 53)"),
    (8104, "127.0.0.1", None),  # another user's process: ss may not say whose
    (8105, "127.0.0.1", "sshd (pid 54)"),
    (9999, "127.0.0.1", None),
], ids=["address", "wildcard-ours", "elsewhere", "star", "ipv6-any", "interface", "hidden", "mapped", "absent"])
def test_the_owner_is_read_from_ss(port: int, host: str, owner: str | None) -> None:
    assert listeners.owner_in(SS, port, host) == owner
