"""A pool is ready only if it names this data directory: another stack's pool on our port is refused in one line."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from hostd.guard.health import HealthRoutes, ensure_instance, instance_id
from hostd.ops import readiness, stack
from hostd.ops.haproxy import StackError
from hostd.ops.readiness import ForeignStack
from hostd.settings import Settings

REMOTE = {"HOSTD_DATABASE_URL": "postgresql://hostd:pw@10.0.0.10/hostd", "HOSTD_MEMCACHED": "10.0.0.21:11211"}


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _never(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise AssertionError("only /readyz is asked")


@pytest.fixture
def serve() -> Iterator[Callable[[str | None], int]]:
    """Serve a web pool's health routes naming ``instance`` on a free loopback port; its port."""
    servers: list[WSGIServer] = []

    def start(instance: str | None) -> int:
        server = make_server("127.0.0.1", 0, HealthRoutes(_never, ready=lambda: None, instance=instance),
                             handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_port)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _web_host(data: Path, port: int) -> Settings:
    """A host that runs the web pool alone: the pool is all its health check asks."""
    settings = Settings.from_env({"HOSTD_DATA": str(data), "HOSTD_ROLES": "web", "HOSTD_WEB_PORT": str(port), **REMOTE})
    ensure_instance(settings.instance_file)
    return settings


def test_our_own_pool_is_ready(tmp_path: Path, serve: Callable[[str | None], int]) -> None:
    ours = tmp_path / "ours"
    ours.mkdir()
    ensure_instance(ours / "instance")
    settings = _web_host(ours, serve(instance_id(ours / "instance")))
    assert readiness.pools_problem(settings) is None
    assert stack.health_problem(settings) is None


@pytest.mark.parametrize("foreign", ["another", None], ids=["another-directory", "none-named"])
def test_another_stacks_pool_on_our_port_is_refused_in_one_line(tmp_path: Path, serve: Callable[[str | None], int],
                                                                 foreign: str | None) -> None:
    other = tmp_path / "other"
    other.mkdir()
    ensure_instance(other / "instance")
    port = serve(instance_id(other / "instance") if foreign else None)
    ours = tmp_path / "ours"
    ours.mkdir()
    settings = _web_host(ours, port)
    with pytest.raises(ForeignStack) as refused:
        stack.health_problem(settings)
    message = str(refused.value)
    assert re.fullmatch(rf"port {port} \(web pool\) answers for another data directory than {re.escape(str(ours))}:"
                        rf" \S.* \(pid {os.getpid()}\)", message), message
    # It is a StackError: `make up` prints it as its one line, and waiting stops at once.
    with pytest.raises(StackError, match=re.escape(message)):
        stack.wait_healthy(settings, timeout=30, alive=lambda: True)
