"""Fixtures for the HAProxy tests: TLS files, echo pools, a running HAProxy.

HAProxy is started once per test module on the real ``haproxy/haproxy.cfg``;
the three echo backends live for the whole session. A storage shard's pools
are echo backends too, named ``<pool>@<shard>`` (:func:`shard_echo_backends`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from hostd.ops.routes import ShardServers
from hostd.ops.tls import TlsFiles, ensure_certificates

from .echo_backend import EchoBackend
from .haproxy_runner import SERVERS, HAProxy

REPO = Path(__file__).resolve().parents[2]
HAPROXY_DIR = REPO / "haproxy"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def echo_backends() -> Iterator[dict[str, EchoBackend]]:
    backends = {pool: EchoBackend(pool).start() for pool in SERVERS}
    yield backends
    for backend in backends.values():
        backend.stop()


def backend_addresses(backends: dict[str, EchoBackend]) -> dict[str, str]:
    return {pool: backend.address for pool, backend in backends.items()}


def shard_echo_backends(shards: Iterable[str]) -> dict[str, EchoBackend]:
    """Started echo backends for the git and hg pools of each shard, keyed ``<pool>@<shard>``."""
    return {name: EchoBackend(name).start() for shard in shards for name in (f"git@{shard}", f"hg@{shard}")}


def shard_servers(backends: Mapping[str, EchoBackend]) -> list[ShardServers]:
    """The shards of :func:`shard_echo_backends`, one echo server per pool each."""
    shards = sorted({name.partition("@")[2] for name in backends})
    return [
        ShardServers(shard, git=(backends[f"git@{shard}"].address,), hg=(backends[f"hg@{shard}"].address,))
        for shard in shards
    ]


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory,
    tls: TlsFiles,
    echo_backends: dict[str, EchoBackend],
) -> Iterator[HAProxy]:
    run_dir = tmp_path_factory.mktemp("haproxy-run")
    with HAProxy(HAPROXY_DIR, run_dir, tls, backend_addresses(echo_backends)) as running:
        yield running
