"""The route map and shard backends: rendered as tables, pushed into the real HAProxy.

The rendering is pure and tested as tables. :func:`push_map` is tested
against HAProxy 2.6 running the real haproxy.cfg (tests/haproxy's runner),
with echo servers for the home pools and for the pools of shards s2 and s3:
a pushed map moves requests at once, with no reload, and a new version
replaces the old one whole.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostd.names import RepoName
from hostd.ops import routes
from hostd.ops.haproxy import PoolError
from hostd.ops.routes import Server, ShardServers
from hostd.ops.tls import TlsFiles, ensure_certificates
from hostd.settings import PROJECT_ROOT, Settings
from tests.haproxy.conftest import backend_addresses, shard_echo_backends, shard_servers
from tests.haproxy.echo_backend import EchoBackend
from tests.haproxy.haproxy_runner import SERVERS, HAProxy, find_haproxy
from tests.haproxy.http_clients import Response, h1_request

HOME = "default"
PROJ, TOOLS, OTHER = RepoName("dana", "proj"), RepoName("dana", "tools"), RepoName("carol", "stay")

# --- render_map ---------------------------------------------------------------

MAPS = [
    ("empty", [], {"s2"}, ""),
    ("one", [(PROJ, "s2")], {"s2"}, "dana/proj s2\n"),
    ("sorted", [(TOOLS, "s3"), (OTHER, "s2"), (PROJ, "s2")], {"s2", "s3"},
     "carol/stay s2\ndana/proj s2\ndana/tools s3\n"),
    ("home-left-out", [(PROJ, HOME), (TOOLS, "s3")], {"s3"}, "dana/tools s3\n"),
    ("unserved-left-out", [(PROJ, "s2"), (TOOLS, "s9")], {"s2"}, "dana/proj s2\n"),
    ("nothing-served", [(PROJ, "s2")], set(), ""),
]


@pytest.mark.parametrize(("placed", "served", "expected"), [m[1:] for m in MAPS], ids=[m[0] for m in MAPS])
def test_render_map(placed: list[tuple[RepoName, str]], served: set[str], expected: str) -> None:
    assert routes.render_map(placed, served=served) == expected


BAD_MAPS = [
    ("upper-case-name", [(RepoName("Dana", "proj"), "s2")], {"s2"}),
    ("dot-git-name", [(RepoName("dana", "proj.git"), "s2")], {"s2"}),
    ("space-in-name", [(RepoName("dana", "a b"), "s2")], {"s2"}),
    ("bad-shard", [(PROJ, "S2")], {"s2"}),
    ("shard-with-space", [(PROJ, "s2 x")], {"s2"}),
    ("placed-twice", [(PROJ, "s2"), (PROJ, "s3")], {"s2", "s3"}),
    ("bad-served", [], {"s2\n"}),
]


@pytest.mark.parametrize(("placed", "served"), [m[1:] for m in BAD_MAPS], ids=[m[0] for m in BAD_MAPS])
def test_render_map_refuses(placed: list[tuple[RepoName, str]], served: set[str]) -> None:
    with pytest.raises(ValueError):
        routes.render_map(placed, served=served)


def test_served_shards_are_all_but_home() -> None:
    shards = [ShardServers("s2"), ShardServers(HOME), ShardServers("s3")]
    assert routes.served_shards(shards, home=HOME) == {"s2", "s3"}


PARSED = [
    ("empty", "", []),
    ("two", "a/b s2\nc/d s3\n", [("a/b", "s2"), ("c/d", "s3")]),
]
UNPARSABLE = [
    ("blank-line", "a/b s2\n\nc/d s3\n"),
    ("no-value", "a/b\n"),
    ("three-words", "a/b s2 x\n"),
    ("upper-case", "A/b s2\n"),
    ("bad-shard", "a/b 2s\n"),
    ("twice", "a/b s2\na/b s3\n"),
]


@pytest.mark.parametrize(("text", "entries"), [p[1:] for p in PARSED], ids=[p[0] for p in PARSED])
def test_parse_map(text: str, entries: list[tuple[str, str]]) -> None:
    assert routes.parse_map(text) == entries


@pytest.mark.parametrize("text", [u[1] for u in UNPARSABLE], ids=[u[0] for u in UNPARSABLE])
def test_parse_map_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        routes.parse_map(text)


# --- Servers and render_backends ------------------------------------------------

LINES = [
    ("tcp", Server("10.0.0.2:8101"), '    server git1 "10.0.0.2:8101" check'),
    ("hostname", Server("pool-2.example:8101"), '    server git1 "pool-2.example:8101" check'),
    ("ipv6", Server("[::1]:8101", maxconn=8), '    server git1 "[::1]:8101" maxconn 8 check'),
    ("unix", Server("unix@/run/hostd/git.sock", check="127.0.0.1:8101"),
     '    server git1 "unix@/run/hostd/git.sock" check addr 127.0.0.1 port 8101'),
    ("tcp-other-check", Server("10.0.0.2:8101", check="[fd00::2]:9101"),
     '    server git1 "10.0.0.2:8101" check addr fd00::2 port 9101'),
]


@pytest.mark.parametrize(("server", "line"), [c[1:] for c in LINES], ids=[c[0] for c in LINES])
def test_server_line(server: Server, line: str) -> None:
    assert server.line("git1") == line


BAD_SERVERS = [
    ("no-port", {"address": "10.0.0.2"}),
    ("port-zero", {"address": "10.0.0.2:0"}),
    ("port-too-big", {"address": "10.0.0.2:65536"}),
    ("space", {"address": "10.0.0.2:8101 backup"}),
    ("quote", {"address": '10.0.0.2:8101"'}),
    ("variable", {"address": "${HOME}:8101"}),
    ("newline", {"address": "10.0.0.2:8101\n    server x 1.2.3.4:1"}),
    ("relative-unix", {"address": "unix@run/git.sock", "check": "127.0.0.1:8101"}),
    ("unix-without-check", {"address": "unix@/run/git.sock"}),
    ("unix-check", {"address": "10.0.0.2:8101", "check": "unix@/run/git.sock"}),
    ("zero-maxconn", {"address": "10.0.0.2:8101", "maxconn": 0}),
]


@pytest.mark.parametrize("fields", [b[1] for b in BAD_SERVERS], ids=[b[0] for b in BAD_SERVERS])
def test_server_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Server(**fields)


@pytest.mark.parametrize(("name", "servers"), [("S2", ()), ("2s", ()), ("s2", ("10.0.0.2",))],
                         ids=["upper-case-name", "digit-first", "bad-address"])
def test_shard_servers_refuses(name: str, servers: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        ShardServers(name, git=servers)


def test_render_backends_renders_every_shard_but_home() -> None:
    shards = [
        ShardServers("s3", hg=("10.0.0.3:8102",)),
        ShardServers(HOME, git=("127.0.0.1:8101",)),
        ShardServers("s2", git=("10.0.0.2:8101", Server("10.0.0.22:8101", maxconn=16))),
    ]
    text = routes.render_backends(shards, home=HOME)
    assert text.startswith(routes.HEADER)
    assert "hostd routes sync" in routes.HEADER and "Do not edit" in routes.HEADER
    backends = [line for line in text.splitlines() if line.startswith("backend ")]
    assert backends == ["backend git-s2", "backend hg-s2", "backend git-s3", "backend hg-s3"]
    servers = [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers == [
        'server git1 "10.0.0.2:8101" check',
        'server git2 "10.0.0.22:8101" maxconn 16 check',
        'server hg1 "10.0.0.3:8102" check',
    ]
    # Every placeholder filled in, no template-only comment left.
    assert "@" not in text.replace('"unix@', "") and "##" not in text
    # Each backend's 503s, in the body (git shows it) and the status line (hg shows that).
    assert text.count("(s2) is unavailable") == 6 and text.count("No server yet") == 2


def test_render_backends_names_servers_as_the_database_does() -> None:
    """Names given (the database's) stay with their servers, whatever their positions."""
    shards = [ShardServers("s2", git=(Server("10.0.0.9:8101", name="git4"), Server("10.0.0.3:8101", name="git3")),
                           hg=(Server("10.0.0.2:8102", name="hg1"),))]
    servers = [line.strip() for line in routes.render_backends(shards, home=HOME).splitlines()
               if line.strip().startswith("server ")]
    assert servers == ['server git4 "10.0.0.9:8101" check', 'server git3 "10.0.0.3:8101" check',
                       'server hg1 "10.0.0.2:8102" check']


@pytest.mark.parametrize("git", [
    (Server("10.0.0.2:8101", name="git2"), Server("10.0.0.3:8101", name="git2")),
    ("10.0.0.2:8101", Server("10.0.0.3:8101", name="git1")),
], ids=["same-name", "named-as-a-position"])
def test_two_servers_of_a_pool_cannot_share_a_name(git: tuple[Server | str, ...]) -> None:
    with pytest.raises(ValueError, match="same name"):
        ShardServers("s2", git=git)


@pytest.mark.parametrize("name", ["git 2", "git2;del server git/git1", "", "-x"], ids=["space", "semicolon", "empty",
                                                                                     "dash"])
def test_server_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="not a server name"):
        Server("10.0.0.2:8101", name=name)


SHARD_BACKENDS = [
    ("git-s2", ("git", "s2")),
    ("hg-east-1", ("hg", "east-1")),
    ("git", None),
    ("web", None),
    ("web-s2", None),
    ("git-S2", None),
    ("git-", None),
    ("hg-2s", None),
]


@pytest.mark.parametrize(("backend", "parsed"), SHARD_BACKENDS, ids=[b for b, _ in SHARD_BACKENDS])
def test_parse_shard_backend(backend: str, parsed: tuple[str, str] | None) -> None:
    assert routes.parse_shard_backend(backend) == parsed
    if parsed is not None:
        assert routes.shard_backend(*parsed) == backend


def test_render_backends_of_home_alone_is_the_header() -> None:
    assert routes.render_backends([ShardServers(HOME)], home=HOME) == routes.HEADER


@pytest.mark.parametrize(("shards", "home"), [
    ([ShardServers("s2"), ShardServers("s2")], HOME),
    ([], "Default"),
], ids=["shard-twice", "bad-home"])
def test_render_backends_refuses(shards: list[ShardServers], home: str) -> None:
    with pytest.raises(ValueError):
        routes.render_backends(shards, home=home)


# --- Files ---------------------------------------------------------------------


def test_write_route_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.run_dir.mkdir()
    backends = routes.render_backends([ShardServers("s2")], home=HOME)
    routes.write_route_files(settings, "dana/proj s2\n", backends)
    assert routes.map_path(settings).read_text() == "dana/proj s2\n"
    assert routes.backends_path(settings).read_text() == backends
    assert sorted(p.name for p in settings.run_dir.iterdir()) == ["repos.map", "shards.cfg"]


def test_write_route_files_refuses_a_shard_without_backends(tmp_path: Path) -> None:
    """HAProxy would send its repositories to the web pool."""
    settings = Settings(data_dir=tmp_path)
    settings.run_dir.mkdir()
    with pytest.raises(ValueError, match="s3"):
        routes.write_route_files(settings, "dana/proj s2\ndana/tools s3\n",
                                 routes.render_backends([ShardServers("s2")], home=HOME))
    assert list(settings.run_dir.iterdir()) == []


def test_ensure_route_files_creates_only_what_is_missing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.run_dir.mkdir()
    routes.map_path(settings).write_text("dana/proj s2\n")
    routes.ensure_route_files(settings)
    assert routes.map_path(settings).read_text() == "dana/proj s2\n"
    assert routes.backends_path(settings).read_text() == routes.HEADER


# --- Against the real HAProxy --------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[str, EchoBackend]]:
    """The home pools (git, hg, web) and the pools of shards s2 and s3 (git@s2, ...)."""
    backends = {pool: EchoBackend(pool).start() for pool in SERVERS} | shard_echo_backends(["s2", "s3"])
    yield backends
    for backend in backends.values():
        backend.stop()


def _start(data_dir: Path, tls: TlsFiles, echoes: dict[str, EchoBackend], *extra: ShardServers,
           wait: bool = False) -> HAProxy:
    """HAProxy with shards s2 and s3 (and ``extra``), an empty route map, run dir ``data_dir/run``.

    Start waits for the servers of s2 and s3 to be up, and for those of
    ``extra`` only with ``wait``.
    """
    home = {pool: backend for pool, backend in echoes.items() if pool in SERVERS}
    shards = shard_servers({name: backend for name, backend in echoes.items() if "@" in name})
    proxy = HAProxy(PROJECT_ROOT / "haproxy", Settings(data_dir=data_dir).run_dir, tls, backend_addresses(home),
                    shards=[*shards, *extra], wait_for_shards=wait or not extra)
    return proxy.start()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles,
            echoes: dict[str, EchoBackend]) -> Iterator[tuple[HAProxy, Settings]]:
    data_dir = tmp_path_factory.mktemp("routes-data")
    proxy = _start(data_dir, tls, echoes, ShardServers("s4"))
    yield proxy, Settings(data_dir=data_dir)
    proxy.stop()


def _clone(proxy: HAProxy, repo: str) -> Response:
    return h1_request(proxy.https, "GET", f"/{repo}.git/info/refs?service=git-upload-pack", ())


def _pool(proxy: HAProxy, repo: str) -> str | None:
    return _clone(proxy, repo).header("x-echo-pool")


def test_push_map_routes_at_once_without_a_reload(running: tuple[HAProxy, Settings]) -> None:
    proxy, settings = running
    assert routes.push_map(settings, "") == 0
    assert _pool(proxy, "dana/proj") == "git"
    worker = proxy.admin("show info")
    assert routes.push_map(settings, "dana/proj s2\ndana/tools s3\n") == 2
    assert routes.show_routes(settings) == {"dana/proj": "s2", "dana/tools": "s3"}
    assert [_pool(proxy, r) for r in ("dana/proj", "Dana/Tools", "dana/projectx")] == ["git@s2", "git@s3", "git"]
    hg = h1_request(proxy.https, "GET", "/DANA/proj?cmd=capabilities", ())
    assert hg.header("x-echo-pool") == "hg@s2"
    # The same worker process: no reload happened.
    pid = next(line for line in worker.splitlines() if line.startswith("Pid:"))
    assert pid in proxy.admin("show info").splitlines()

    # A new version replaces the old one whole: a removed entry routes home again.
    assert routes.push_map(settings, "dana/tools s2\n") == 1
    assert routes.show_routes(settings) == {"dana/tools": "s2"}
    assert [_pool(proxy, r) for r in ("dana/proj", "dana/tools")] == ["git", "git@s2"]


def test_push_map_sends_a_large_map_in_pieces(running: tuple[HAProxy, Settings]) -> None:
    """HAProxy drops a CLI command larger than its buffer without a word: the map goes in pieces."""
    proxy, settings = running
    text = "".join(f"owner{n:05d}/repository-{n:05d} s3\n" for n in range(3000))
    assert len(text) > 8 * routes.PAYLOAD_BYTES
    assert routes.push_map(settings, text) == 3000
    assert len(routes.show_routes(settings)) == 3000
    assert [_pool(proxy, r) for r in ("owner00000/repository-00000", "owner02999/repository-02999")] == [
        "git@s3", "git@s3"]


def test_push_map_refuses_a_shard_without_backends(running: tuple[HAProxy, Settings]) -> None:
    """Its requests would go to the web pool: the map HAProxy has stays as it was."""
    proxy, settings = running
    routes.push_map(settings, "dana/proj s2\n")
    with pytest.raises(PoolError, match="s9"):
        routes.push_map(settings, "dana/proj s9\n")
    assert routes.show_routes(settings) == {"dana/proj": "s2"}
    assert _pool(proxy, "dana/proj") == "git@s2"


def test_a_shard_without_servers_answers_503_with_the_reason(running: tuple[HAProxy, Settings]) -> None:
    proxy, settings = running
    routes.push_map(settings, "dana/proj s4\n")
    response = _clone(proxy, "dana/proj")
    assert (response.status, response.header("x-echo-pool"), response.header("retry-after")) == (503, None, "10")
    assert response.body == b"The storage shard holding this repository (s4) is unavailable; retry shortly.\n"
    assert response.reason == "The storage shard holding this repository (s4) is unavailable; retry shortly."
    assert response.header("x-hostd-unavailable") is None


def test_a_shard_that_dies_answers_503_with_the_reason(
    tmp_path: Path, tls: TlsFiles, echoes: dict[str, EchoBackend]
) -> None:
    """The request that finds the server gone, and every one after it, get the reason."""
    doomed = EchoBackend("git@s5").start()
    proxy = _start(tmp_path, tls, echoes, ShardServers("s5", git=(doomed.address,)), wait=True)
    try:
        routes.push_map(Settings(data_dir=tmp_path), "dana/proj s5\n")
        assert _pool(proxy, "dana/proj") == "git@s5"
        doomed.stop()
        responses = [_clone(proxy, "dana/proj") for _ in range(2)]
    finally:
        proxy.stop()
    reason = b"The storage shard holding this repository (s5) is unavailable; retry shortly.\n"
    assert [(r.status, r.header("retry-after"), r.body) for r in responses] == [(503, "10", reason)] * 2
    assert [r.reason for r in responses] == [reason.decode().strip()] * 2


def test_push_map_to_a_stopped_haproxy_raises(tmp_path: Path, tls: TlsFiles, echoes: dict[str, EchoBackend]) -> None:
    _start(tmp_path, tls, echoes).stop()
    with pytest.raises(PoolError, match="is the stack running"):
        routes.push_map(Settings(data_dir=tmp_path), "dana/proj s2\n")
    with pytest.raises(PoolError):
        routes.show_routes(Settings(data_dir=tmp_path))


def test_haproxy_refuses_to_start_without_a_route_file(tmp_path: Path, tls: TlsFiles) -> None:
    """Why both files must exist before HAProxy starts: ensure_route_files."""
    settings = Settings(data_dir=tmp_path)
    proxy = HAProxy(PROJECT_ROOT / "haproxy", settings.run_dir, tls, {pool: "127.0.0.1:1" for pool in SERVERS})
    assert proxy.check().returncode == 0
    command = [find_haproxy(), "-c", *proxy.config_arguments()]
    for missing in (routes.MAP_FILE, routes.BACKENDS_FILE):
        (settings.run_dir / missing).unlink()
        result = subprocess.run(command, env=proxy.environment(), capture_output=True, text=True, check=False)
        assert result.returncode != 0 and missing in result.stdout + result.stderr
        routes.ensure_route_files(settings)
        result = subprocess.run(command, env=proxy.environment(), capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
