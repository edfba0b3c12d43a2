"""Only HAProxy speaks for clients: the pools believe X-Forwarded-For from their unix socket alone.

HAProxy reaches each pool over a unix socket in the installation's 0700 run
directory; the pool's TCP port is a side door (health checks, operators) on
which every peer is a plain, untrusted client. Before this, any local
process could connect to a pool's TCP port, name a new client address in
each request and guess passwords without ever meeting the throttle.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import stat
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

USER = "forger"
PASSWORD = "forger-password-1"


@pytest.fixture(scope="module")
def target(stack: Stack) -> str:
    stack.add_user(USER, PASSWORD)
    stack.hostd("repo", "create", f"{USER}/vault", "--vcs", "git")
    return f"/{USER}/vault.git/info/refs?service=git-upload-pack"


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


def _direct(stack: Stack, path: str, headers: dict[str, str]) -> int:
    """One request straight to the git pool's TCP port, as any local process can send it."""
    connection = http.client.HTTPConnection(stack.settings.bind, stack.settings.ports.git, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_forged_forwarded_addresses_on_the_pool_port_do_not_escape_the_throttle(stack: Stack, target: str) -> None:
    stack.forget_failed_logins()
    try:
        statuses = [
            _direct(stack, target, {"Authorization": _basic(f"guess-{n}"), "X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(1, 16)
        ]
        # singlemalt locks (address, user) after 10 failures: the address is
        # the local process's own, whatever it wrote in X-Forwarded-For.
        assert statuses[:10] == [401] * 10
        assert set(statuses[10:]) == {429}
    finally:
        stack.forget_failed_logins()


def test_haproxy_is_believed_over_its_unix_socket(stack: Stack, target: str) -> None:
    """A client connecting from 127.0.0.7 is seen by the pool as 127.0.0.7, not as HAProxy."""
    log = stack.settings.log_dir / "git.log"
    offset = log.stat().st_size
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    connection = http.client.HTTPSConnection(stack.settings.bind, stack.settings.ports.https, timeout=10,
                                             context=context, source_address=("127.0.0.7", 0))
    try:
        connection.request("GET", target, headers={"Authorization": _basic(PASSWORD), "User-Agent": "git/2.39"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()

    def seen() -> bool:
        with log.open("rb") as lines:
            lines.seek(offset)
            return any(b"client=127.0.0.7 " in line and USER.encode() in line for line in lines)

    wait_until("the pool logs the client's own address", seen, 10)


def test_the_pools_unix_sockets_are_private_to_the_installation(stack: Stack) -> None:
    run = stack.settings.run_dir
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    for pool in ("git", "hg", "web"):
        assert stat.S_ISSOCK(Path(stack.settings.pool_socket(pool)).stat().st_mode)
