"""``hostd pool add|remove|list`` on a storage shard's backends: every load balancer, through the database.

Two load balancers (HAProxy 2.6 on the real configuration, tests/haproxy's
runner) route alice/proj to shard s2, whose pools are echo servers. The
command runs beside the first, which applies it at once; the second's route
follower (:func:`hostd.ops.routesync.follow`, as ``hostd routes follow``
runs it) applies it from the database, without a reload.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.names import RepoName
from hostd.ops import pooladmin
from hostd.ops.routes import Server, ShardServers
from hostd.ops.routesync import follow
from hostd.ops.tls import TlsFiles, ensure_certificates
from hostd.settings import PROJECT_ROOT, Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.shards import Shards
from tests.haproxy.conftest import backend_addresses
from tests.haproxy.echo_backend import EchoBackend
from tests.haproxy.haproxy_runner import SERVERS, HAProxy
from tests.haproxy.http_clients import Response, h1_request
from tests.hostd.cli.conftest import DATABASES, Hostd
from tests.polling import wait_until

PROJ = RepoName("alice", "proj")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[str, EchoBackend]]:
    backends = {pool: EchoBackend(pool).start() for pool in (*SERVERS, "git-a@s2", "git-b@s2", "hg-a@s2")}
    yield backends
    for backend in backends.values():
        backend.stop()


@pytest.fixture
def database(data: Path) -> Iterator[Database]:
    """The installation's database."""
    db = Database(DATABASES[data.resolve()])
    yield db
    db.close()


def _balancer(run_dir: Path, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> HAProxy:
    """A load balancer as shards.cfg had it when it started: s2's git1 and hg1; alice/proj routed to s2."""
    home = {pool: backend for pool, backend in echoes.items() if pool in SERVERS}
    s2 = ShardServers("s2", git=(Server(echoes["git-a@s2"].address, name="git1"),),
                      hg=(Server(echoes["hg-a@s2"].address, name="hg1"),))
    return HAProxy(PROJECT_ROOT / "haproxy", run_dir, tls, backend_addresses(home), shards=[s2],
                   routes=[(PROJ, "s2")]).start()


def _clone(proxy: HAProxy, delay: int = 0) -> Response:
    headers = (("X-Echo-Delay", str(delay)),) if delay else ()
    return h1_request(proxy.https, "GET", f"/{PROJ}.git/info/refs?service=git-upload-pack", headers)


def _names(settings: Settings) -> dict[str, str]:
    """git-s2's servers on a load balancer: name -> state."""
    return {server.name: server.state for server in pooladmin.servers(settings, "git-s2")}


def test_a_server_added_anywhere_gets_traffic_on_every_load_balancer_and_leaves_after_its_sessions(
        hostd: Hostd, data: Path, database: Database, tls: TlsFiles, echoes: dict[str, EchoBackend],
        tmp_path: Path) -> None:
    a, b = echoes["git-a@s2"].address, echoes["git-b@s2"].address
    assert hostd("shard", "add", "s2", "--git", a, "--hg", echoes["hg-a@s2"].address)[0] == 0
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_repo(PROJ, "git", False, shard="s2")
    here = Settings(data_dir=data)
    there = Settings(data_dir=tmp_path / "lb2", database_url=DATABASES[data.resolve()])
    lb1 = _balancer(here.run_dir, tls, echoes)
    lb2 = _balancer(there.run_dir, tls, echoes)
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(there, database, stop), kwargs={"retry": 0.1})
    try:
        follower.start()
        code, out, err = hostd("pool", "add", "git-s2", "git2", b)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == (f"git-s2/git2 {b} added to shard s2's git servers "
                            "(every load balancer's route follower adds it)")
        assert lines[1].startswith(f"git-s2/git2\tUP\t0 now\t0 total\tmaxconn -\t{b}\t")
        # Here at once; the database has it, by its name; the other load balancer's follower adds it.
        assert _names(here) == {"git1": "UP", "git2": "UP"}
        assert Shards(database).get("s2").servers("git") == (("git1", a), ("git2", b))
        wait_until("git2 up on the second load balancer", lambda: _names(there).get("git2") == "UP", timeout=20)
        assert {_clone(lb2).header("x-echo-pool") for _ in range(6)} == {"git-a@s2", "git-b@s2"}
        code, out, _ = hostd("pool", "list", "git-s2")
        assert [line.split("\t")[:2] for line in out.splitlines()] == [["git-s2/git1", "UP"], ["git-s2/git2", "UP"]]

        # A clone in flight on git1 of the second load balancer when git1 is removed: it finishes there.
        pooladmin.drain(there, "git-s2", "git2")
        slow: list[Response] = []
        clone = threading.Thread(target=lambda: slow.append(_clone(lb2, delay=4)))
        clone.start()
        wait_until("the clone is on git1", lambda: pooladmin.server(there, "git-s2", "git1").sessions == 1, timeout=5)
        pooladmin.ready(there, "git-s2", "git2")
        code, out, err = hostd("pool", "remove", "git-s2", "git1")
        assert (code, err) == (0, "")
        assert out.splitlines() == [
            "git-s2/git1 taken out of shard s2's git servers (every load balancer's route follower drains and "
            "deletes it)", "git-s2/git1 removed"]
        assert _names(here) == {"git2": "UP"}
        wait_until("git1 drained on the second load balancer", lambda: _names(there).get("git1") == "DRAIN",
                   timeout=10)
        assert {_clone(lb2).header("x-echo-pool") for _ in range(3)} == {"git-b@s2"}
        clone.join(timeout=15)
        assert [(r.status, r.header("x-echo-pool")) for r in slow] == [(200, "git-a@s2")]
        wait_until("git1 deleted on the second load balancer", lambda: "git1" not in _names(there), timeout=10)
        assert _names(there) == {"git2": "UP"}
    finally:
        stop.set()
        follower.join(timeout=30)
        lb1.stop()
        lb2.stop()
    assert not follower.is_alive()


def test_a_shard_server_is_recorded_when_no_haproxy_runs_here(hostd: Hostd) -> None:
    hostd("shard", "add", "s2", "--git", "10.0.0.12:8101", "--hg", "10.0.0.12:8102")
    code, out, err = hostd("pool", "add", "git-s2", "git2", "10.0.0.13:8101")
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first == ("git-s2/git2 10.0.0.13:8101 added to shard s2's git servers "
                     "(every load balancer's route follower adds it)")
    assert second.startswith("not added to this load balancer now: HAProxy admin socket ")
    assert second.endswith("is the stack running?")
    assert hostd("shard", "list")[1].endswith("\t10.0.0.12:8101,10.0.0.13:8101,10.0.0.12:8102\n")
    code, out, err = hostd("pool", "remove", "git-s2", "git1")
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("not removed from this load balancer now: HAProxy admin socket ")
    assert hostd("shard", "list")[1].endswith("\t10.0.0.13:8101,10.0.0.12:8102\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pool", "add", "git-s2", "git2", "pool-2.example:8101"), "invalid address 'pool-2.example:8101'"),
        (("pool", "add", "git-s2", "git2", "10.0.0.13:8101", "--maxconn", "4"), "a shard's servers have no --maxconn"),
        (("pool", "add", "git-s2", "git1", "10.0.0.13:8101"), "shard s2's git pool has git1 at 10.0.0.12:8101"),
        (("pool", "add", "hg-s9", "hg2", "10.0.0.13:8102"), "no such shard: s9"),
        (("pool", "remove", "git-s2", "git1"), "it is the last server of shard s2's git pool"),
        (("pool", "remove", "hg-s2", "hg7"), "shard s2's hg pool has no server hg7"),
    ],
    ids=["host-name", "maxconn", "name-taken", "unknown-shard", "last", "unknown-server"],
)
def test_shard_server_refusals_are_one_line(hostd: Hostd, args: tuple[str, ...], message: str) -> None:
    hostd("shard", "add", "s2", "--git", "10.0.0.12:8101", "--hg", "10.0.0.12:8102")
    code, _, err = hostd(*args)
    assert code == 1 and err.startswith("hostd: ") and message in err and err.count("\n") == 1
    assert hostd("shard", "list")[1].endswith("\t10.0.0.12:8101,10.0.0.12:8102\n")


def _states(settings: Settings, backend: str) -> dict[str, str]:
    return {server.name: server.state for server in pooladmin.servers(settings, backend)}


def _home_clone(proxy: HAProxy) -> Response:
    """A clone of a repository of this load balancer's own shard: the home backend git."""
    return h1_request(proxy.https, "GET", "/bob/home.git/info/refs?service=git-upload-pack")


def test_the_last_serving_server_of_a_backend_is_drained_or_removed_only_with_force(
        hostd: Hostd, data: Path, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    settings = Settings(data_dir=data)
    proxy = _balancer(settings.run_dir, tls, echoes)
    try:
        for args, does in ((("pool", "drain", "git", "git1"), "drains"),
                           (("pool", "remove", "git", "git1"), "removes")):
            code, out, err = hostd(*args)
            assert (code, out) == (1, "")
            assert err.startswith(f"hostd: refusing to {args[1]} git/git1: it is the ") and err.count("\n") == 1
            assert f"server of backend git, and every request to it would get a 503; --force {does} it anyway" in err
        assert _states(settings, "git") == {"git1": "UP"}

        # With a second server serving, git1 may go; then git2 is the last serving one.
        code, _, err = hostd("pool", "add", "git", "git2", echoes["git-b@s2"].address)
        assert code == 0, err
        assert hostd("pool", "drain", "git", "git1")[0] == 0
        code, _, err = hostd("pool", "drain", "git", "git2")
        assert code == 1 and "git/git2: it is the last serving server of backend git" in err
        code, _, err = hostd("pool", "remove", "git", "git2", "--timeout", "5")
        assert code == 1 and "--force removes it anyway" in err
        assert _states(settings, "git") == {"git1": "DRAIN", "git2": "UP"}
        assert _home_clone(proxy).header("x-echo-pool") == "git-b@s2"

        # --force does it: nothing serves git then, and clients are told so.
        code, out, err = hostd("pool", "drain", "git", "git2", "--force")
        assert (code, err) == (0, "") and out.startswith("git/git2 drained")
        refused = _home_clone(proxy)
        assert (refused.status, refused.header("retry-after")) == (503, "5")
        assert refused.body.startswith(b"The git pool is unavailable")
        code, out, err = hostd("pool", "remove", "git", "git2", "--force", "--timeout", "5")
        assert (code, out, err) == (0, "git/git2 removed\n", "")
        assert hostd("pool", "ready", "git", "git1")[0] == 0
        assert _home_clone(proxy).header("x-echo-pool") == "git"
    finally:
        proxy.stop()


def test_a_shard_s_last_serving_server_here_is_removed_only_with_force(
        hostd: Hostd, data: Path, database: Database, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    a, b = echoes["git-a@s2"].address, echoes["git-b@s2"].address
    hostd("shard", "add", "s2", "--git", a, "--hg", echoes["hg-a@s2"].address)
    settings = Settings(data_dir=data)
    proxy = _balancer(settings.run_dir, tls, echoes)
    try:
        assert hostd("pool", "add", "git-s2", "git2", b)[0] == 0
        assert hostd("pool", "drain", "git-s2", "git1")[0] == 0
        code, _, err = hostd("pool", "remove", "git-s2", "git2")
        assert code == 1 and err.count("\n") == 1
        assert "refusing to remove git-s2/git2: it is the last serving server of backend git-s2" in err
        assert "--force removes it anyway" in err
        # Nothing changed, in the database or here.
        assert Shards(database).get("s2").servers("git") == (("git1", a), ("git2", b))
        assert _names(settings) == {"git1": "DRAIN", "git2": "UP"}
        code, out, err = hostd("pool", "remove", "git-s2", "git2", "--force")
        assert (code, err) == (0, "") and out.splitlines()[-1] == "git-s2/git2 removed"
        assert Shards(database).get("s2").servers("git") == (("git1", a),)
    finally:
        proxy.stop()
