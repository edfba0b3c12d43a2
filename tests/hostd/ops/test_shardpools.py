"""A shard's servers from the database into the running HAProxy, without a reload.

Against HAProxy 2.6 on the real haproxy.cfg and shard-backends.cfg (tests/haproxy's
runner), echo servers for the pools, and a real PostgreSQL: :func:`routesync.sync`
(what every route follower runs) adds the servers the database names and the
running HAProxy lacks, drains and deletes the ones it no longer names once
their sessions end, and leaves the rest, drained or not, alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.names import RepoName
from hostd.ops import haproxy, pooladmin, routes
from hostd.ops.routes import Server, ShardServers
from hostd.ops.routesync import sync
from hostd.ops.shardpools import Reconciled, wanted_servers
from hostd.ops.tls import TlsFiles, ensure_certificates
from hostd.settings import PROJECT_ROOT, Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards
from tests.haproxy.conftest import backend_addresses
from tests.haproxy.echo_backend import EchoBackend
from tests.haproxy.haproxy_runner import SERVERS, HAProxy
from tests.haproxy.http_clients import Response, h1_request
from tests.polling import wait_until

PROJ = RepoName("alice", "proj")
#: The echo servers of shard s2: three git servers and one hg server.
S2 = ("git-a@s2", "git-b@s2", "git-c@s2", "hg-a@s2")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[str, EchoBackend]]:
    backends = {pool: EchoBackend(pool).start() for pool in (*SERVERS, *S2)}
    yield backends
    for backend in backends.values():
        backend.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, database: Database) -> Settings:
    """A load balancer of shard ``default`` whose database places alice/proj on s2."""
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    Shards(database).add("s2")
    accounts.add_repo(PROJ, "git", False, shard="s2")
    return Settings(data_dir=tmp_path, database_url=database_url)


def _start(settings: Settings, tls: TlsFiles, echoes: dict[str, EchoBackend], git: tuple[str, ...]) -> HAProxy:
    """HAProxy whose shards.cfg gives git-s2 the servers ``git`` (``(name, echo)``...) and hg-s2 hg1."""
    home = {pool: backend for pool, backend in echoes.items() if pool in SERVERS}
    servers = tuple(Server(echoes[echo].address, name=name) for name, echo in zip(git[::2], git[1::2], strict=True))
    shard = ShardServers("s2", git=servers, hg=(Server(echoes["hg-a@s2"].address, name="hg1"),))
    proxy = HAProxy(PROJECT_ROOT / "haproxy", settings.run_dir, tls, backend_addresses(home), shards=[shard],
                    routes=[(PROJ, "s2")], wait_for_shards=False)
    return proxy.start()


def _clone(proxy: HAProxy, delay: int = 0) -> Response:
    headers = (("X-Echo-Delay", str(delay)),) if delay else ()
    return h1_request(proxy.https, "GET", f"/{PROJ}.git/info/refs?service=git-upload-pack", headers)


def _servers(settings: Settings) -> dict[str, tuple[str, str]]:
    """git-s2's servers: name -> (state, address)."""
    return {s.name: (s.state, s.worker_address) for s in pooladmin.servers(settings, "git-s2")}


def _up(settings: Settings, *names: str) -> bool:
    states = _servers(settings)
    return all(states.get(name, ("",))[0] == "UP" for name in names)


def test_sync_adds_what_the_database_names_and_removes_what_it_no_longer_does(
        settings: Settings, database: Database, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    a, b, c = (echoes[name].address for name in ("git-a@s2", "git-b@s2", "git-c@s2"))
    shards = Shards(database)
    shards.set_servers("s2", git=(a, b), hg=(echoes["hg-a@s2"].address,))
    proxy = _start(settings, tls, echoes, ("git1", "git-a@s2", "git2", "git-b@s2"))
    try:
        wait_until("git1 and git2 up", lambda: _up(settings, "git1", "git2"), timeout=15)
        pooladmin.drain(settings, "git-s2", "git1")  # an operator's, on this load balancer
        # b leaves, c comes: git2 is b's name, c gets git3.
        shards.set_servers("s2", git=(a, c), hg=(echoes["hg-a@s2"].address,))

        synced = sync(settings, shards)

        assert synced.servers == Reconciled(added=("git-s2/git3",), removed=("git-s2/git2",))
        assert "shard servers added git-s2/git3; removed git-s2/git2" in synced.summary()
        assert _servers(settings) == {"git1": ("DRAIN", a), "git3": ("UP", c)}
        # Checked as the rendered ones are (HAProxy gives an added server no default-server).
        checks = {row["svname"]: (row["check_rise"], row["check_fall"]) for row in
                  haproxy.stat(settings, "git-s2", haproxy.SERVERS)}
        assert checks == {"git1": ("2", "1"), "git3": ("2", "1")}
        assert {_clone(proxy).header("x-echo-pool") for _ in range(4)} == {"git-c@s2"}
        # Nothing left to do: the next sync changes nothing, the operator's drain included.
        assert sync(settings, shards).servers == Reconciled()
        assert _servers(settings)["git1"][0] == "DRAIN"

        # shards.cfg names them as the running HAProxy does: a reload agrees.
        servers = [line.split()[1] for line in routes.backends_path(settings).read_text().splitlines()
                   if line.strip().startswith("server git")]
        assert servers == ["git1", "git3"]
        proxy.reload()
        wait_until("git3 up after the reload", lambda: _up(settings, "git3"), timeout=15)
        assert sync(settings, shards).servers == Reconciled()
        assert sorted(_servers(settings)) == ["git1", "git3"]
    finally:
        proxy.stop()


def test_a_server_with_sessions_is_drained_and_deleted_once_they_end(
        settings: Settings, database: Database, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    a, b = echoes["git-a@s2"].address, echoes["git-b@s2"].address
    shards = Shards(database)
    shards.set_servers("s2", git=(a, b), hg=(echoes["hg-a@s2"].address,))
    proxy = _start(settings, tls, echoes, ("git1", "git-a@s2", "git2", "git-b@s2"))
    try:
        wait_until("git1 and git2 up", lambda: _up(settings, "git1", "git2"), timeout=15)
        pooladmin.drain(settings, "git-s2", "git1")  # so the slow clone goes to git2
        slow: list[Response] = []
        clone = threading.Thread(target=lambda: slow.append(_clone(proxy, delay=4)))
        clone.start()
        wait_until("the clone is on git2", lambda: pooladmin.server(settings, "git-s2", "git2").sessions == 1,
                   timeout=5)
        pooladmin.ready(settings, "git-s2", "git1")
        shards.remove_server("s2", "git", "git2")

        synced = sync(settings, shards)

        assert synced.servers == Reconciled(draining=("git-s2/git2",)) and synced.servers.pending
        assert _servers(settings) == {"git1": ("UP", a), "git2": ("DRAIN", b)}
        assert {_clone(proxy).header("x-echo-pool") for _ in range(3)} == {"git-a@s2"}  # no new session on git2
        clone.join(timeout=15)
        assert [(r.status, r.header("x-echo-pool")) for r in slow] == [(200, "git-b@s2")]  # it ran to its end
        assert sync(settings, shards).servers == Reconciled(removed=("git-s2/git2",))
        assert _servers(settings) == {"git1": ("UP", a)}
    finally:
        proxy.stop()


def test_a_name_given_to_another_address_moves_and_a_host_name_waits_for_a_reload(
        settings: Settings, database: Database, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    a, b, c = (echoes[name].address for name in ("git-a@s2", "git-b@s2", "git-c@s2"))
    shards = Shards(database)
    shards.set_servers("s2", git=(a, b), hg=(echoes["hg-a@s2"].address,))
    proxy = _start(settings, tls, echoes, ("git1", "git-a@s2", "git2", "git-b@s2"))
    try:
        wait_until("git1 and git2 up", lambda: _up(settings, "git1", "git2"), timeout=15)
        shards.remove_server("s2", "git", "git2")
        shards.add_server("s2", "git", "git2", c)
        shards.add_server("s2", "hg", "hg2", "localhost:" + c.rpartition(":")[2])

        done = sync(settings, shards).servers

        assert done == Reconciled(added=("git-s2/git2",), removed=("git-s2/git2",), unresolved=("hg-s2/hg2",))
        assert _servers(settings) == {"git1": ("UP", a), "git2": ("UP", c)}
        assert [s.name for s in pooladmin.servers(settings, "hg-s2")] == ["hg1"]
    finally:
        proxy.stop()


def test_only_the_shards_of_other_load_balancers_are_wanted(database: Database) -> None:
    shards = Shards(database)
    shards.set_servers("default", git=("10.0.0.1:8101",), hg=())
    shards.add("s2", git=("10.0.0.2:8101",), hg=("10.0.0.2:8102",))
    assert wanted_servers(shards.all(), home="default") == {
        "git-s2": {"git1": "10.0.0.2:8101"}, "hg-s2": {"hg1": "10.0.0.2:8102"}}
