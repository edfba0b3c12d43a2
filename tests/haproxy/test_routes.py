"""The route table harness: haproxy/routes.txt replayed through the real HAProxy.

Every case is sent over HTTP/1.1 and over HTTP/2 (both TLS) to HAProxy running
``haproxy/haproxy.cfg`` unmodified, plus the shard backends and route map the
table declares (rendered by hostd/ops/routes.py into the run directory), with
echo servers standing in for the git, hg and web pools and for each shard's
git and hg pools; each case x transport is one test, so a failure names the
case, the transport, the pool expected and the pool (and rule) it got.

The harness is itself tested: a copy of haproxy/ with a rule broken on purpose
must produce failures, or the harness proves nothing.

Run alone with ``make check-routes``.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mercurial import wireprotov1server

from hostd.ops.routes import Server, ShardServers
from hostd.ops.tls import TlsFiles

from .conftest import HAPROXY_DIR, REPO, backend_addresses, shard_echo_backends, shard_servers
from .echo_backend import EchoBackend
from .haproxy_runner import HAProxy, find_haproxy
from .http_clients import h1_request, h2_request
from .replay import TRANSPORTS, Outcome, replay, run_case
from .route_table import HOME_SHARD, POOLS, RouteCase, RouteTableError, load_table, parse_table

TABLE = load_table(HAPROXY_DIR / "routes.txt")
CASES = list(TABLE.cases)


@pytest.fixture(scope="module")
def shard_backends() -> Iterator[dict[str, EchoBackend]]:
    backends = shard_echo_backends(TABLE.shards)
    yield backends
    for backend in backends.values():
        backend.stop()


def table_proxy(haproxy_dir: Path, run_dir: Path, tls: TlsFiles, echo_backends: dict[str, EchoBackend],
                shard_backends: dict[str, EchoBackend]) -> HAProxy:
    """HAProxy on ``haproxy_dir`` with the shards and route map routes.txt declares."""
    return HAProxy(haproxy_dir, run_dir, tls, backend_addresses(echo_backends),
                   shards=shard_servers(shard_backends), routes=TABLE.routes)


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory,
    tls: TlsFiles,
    echo_backends: dict[str, EchoBackend],
    shard_backends: dict[str, EchoBackend],
) -> Iterator[HAProxy]:
    """This module's HAProxy runs with the table's route map (overrides conftest's)."""
    run_dir = tmp_path_factory.mktemp("haproxy-routes-run")
    with table_proxy(HAPROXY_DIR, run_dir, tls, echo_backends, shard_backends) as running:
        yield running


def test_config_is_valid_without_warnings(tmp_path: Path, tls: TlsFiles) -> None:
    addresses = {pool: "127.0.0.1:1" for pool in POOLS}
    # Shards with servers of every form, and one with none yet.
    shards = [
        ShardServers("s2", git=("10.0.0.2:8101",), hg=(Server("unix@/run/hostd/hg.sock", check="127.0.0.1:8102"),)),
        ShardServers("s3", git=(Server("[::1]:8101", maxconn=8), "localhost:8101")),
        ShardServers(HOME_SHARD),
    ]
    result = HAProxy(HAPROXY_DIR, tmp_path, tls, addresses, shards=shards).check()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output, output


def test_haproxy_runs_as_supervisord_starts_it(tmp_path: Path, tls: TlsFiles) -> None:
    """The test's command line is production's: deploy/supervisord.conf, variables filled in."""
    conf = (REPO / "deploy" / "supervisord.conf").read_text()
    match = re.search(r"^\[program:haproxy\]\n(?:;.*\n)*command=(.*)$", conf, re.MULTILINE)
    assert match is not None, "no command= line in [program:haproxy]"
    proxy = HAProxy(HAPROXY_DIR, tmp_path, tls, {pool: "127.0.0.1:1" for pool in POOLS})
    values = {"HOSTD_HAPROXY": find_haproxy(), "HOSTD_ROOT": str(REPO), "HOSTD_RUN_DIR": str(tmp_path)}
    command = re.sub(r"%\(ENV_(\w+)\)s", lambda m: values[m[1]], match[1])
    assert shlex.split(command) == proxy.command()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("target", ["/dana/pr%6Fj.git/info/refs?service=git-upload-pack",
                                    "/%64ana/proj?cmd=capabilities"])
def test_an_encoded_letter_never_spells_a_routed_name(proxy: HAProxy, target: str, transport: str) -> None:
    """The route key is the path as sent: the 400s keep it in the one spelling the map knows."""
    response = (h1_request if transport == "h1" else h2_request)(proxy.https, "GET", target, ())
    assert (response.status, response.header("x-echo-pool")) == (400, None)


def test_wire_command_list_is_mercurials_table() -> None:
    """An hg upgrade that adds a wire command must not send it to the web pool."""
    listed = {
        line.strip()
        for line in (HAPROXY_DIR / "hg-wire-commands.lst").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    live = {name.decode() for name in wireprotov1server.commands}
    assert listed == live, f"missing: {sorted(live - listed)}, stale: {sorted(listed - live)}"


MALFORMED_TABLES = [
    ("route-upper-case", "@route Dana/proj s2\n"),
    ("route-dot-git", "@route dana/proj.git s2\n"),
    ("route-bad-shard", "@route dana/proj S2\n"),
    ("route-three-words", "@route dana/proj s2 x\n"),
    ("route-twice", "@route dana/proj s2\n@route dana/proj s3\n"),
    ("web-shard", "@route dana/proj s2\nc GET /dana/proj  -> web@s2\n"),
    ("home-shard-spelled-out", "@route dana/proj default\nc GET /dana/proj.git/HEAD  -> git@default\n"),
    ("shard-not-routed", "@route dana/proj s2\nc GET /dana/proj.git/HEAD  -> git@s3\n"),
    ("no-pool", "@route dana/proj s2\nc GET /dana/proj.git/HEAD  -> @s2\n"),
]


@pytest.mark.parametrize("text", [m[1] for m in MALFORMED_TABLES], ids=[m[0] for m in MALFORMED_TABLES])
def test_a_malformed_table_is_refused(text: str) -> None:
    with pytest.raises(RouteTableError):
        parse_table(text)


def test_route_table_covers_every_pool() -> None:
    assert len(CASES) >= 45
    assert {case.pool for case in CASES} == set(POOLS)
    # Every shard's git and hg backends are reached, and the home ones.
    expected = {f"{pool}@{shard}" for shard in TABLE.shards for pool in ("git", "hg")} | set(POOLS)
    assert {case.expected for case in CASES} == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_route(proxy: HAProxy, case: RouteCase, transport: str) -> None:
    outcome = run_case(proxy.https, case, transport)
    assert outcome.ok, str(outcome)


# --- The harness must fail when a rule breaks ------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"mutation no longer applies to {path.name}: {old!r} not found"
    path.write_text(text.replace(old, new))


def drop_git_service_rule(haproxy_dir: Path) -> None:
    """Delete the rule sending info/refs?service=git-*-pack to git."""
    _edit(
        haproxy_dir / "haproxy.cfg",
        "http-request set-var(txn.route,ifnotset) str(git:smart-refs) if git_refs_path git_service\n",
        "",
    )


def empty_wire_command_list(haproxy_dir: Path) -> None:
    """A stale hg command table: nothing is a wire command any more."""
    (haproxy_dir / "hg-wire-commands.lst").write_text("# emptied by the test\n")


def drop_hg_client_cmd_rule(haproxy_dir: Path) -> None:
    """Forget that an hg client's unlisted command is still the hg protocol."""
    config = haproxy_dir / "haproxy.cfg"
    rule = "http-request set-var(txn.route,ifnotset) str(hg:hg-client-cmd) if "
    lines = config.read_text().splitlines(keepends=True)
    kept = [line for line in lines if rule not in line]
    assert len(kept) == len(lines) - 1, f"mutation no longer applies to haproxy.cfg: {rule!r}"
    config.write_text("".join(kept))


def match_url_instead_of_path(haproxy_dir: Path) -> None:
    """The classic mistake: "url" holds the whole URI over HTTP/2."""
    _edit(
        haproxy_dir / "haproxy.cfg",
        r"acl git_lfs path_reg ^/[^/]+/[^/]+\.git/info/lfs(/|$)",
        r"acl git_lfs url_reg ^/[^/]+/[^/]+\.git/info/lfs(/|$)",
    )


def match_map_prefix(haproxy_dir: Path) -> None:
    """Look the key up as a prefix: "dana/proj" catches dana/projectx."""
    _edit(haproxy_dir / "haproxy.cfg", "var(txn.repo),map(", "var(txn.repo),map_beg(")


def keep_case(haproxy_dir: Path) -> None:
    """Forget to lower-case the key: /Dana/PROJ is another repository."""
    _edit(haproxy_dir / "haproxy.cfg", "set-var(txn.repo) \"path,lower,", "set-var(txn.repo) \"path,")


def _failed(outcomes: list[Outcome]) -> set[tuple[str, str]]:
    return {(o.case.name, o.transport) for o in outcomes if not o.ok}


MUTATIONS: dict[str, tuple[Callable[[Path], None], set[tuple[str, str]]]] = {
    # Clients without a git User-Agent lose their only signature.
    "drop-git-service-rule": (
        drop_git_service_rule,
        {("isogit-refs", "h1"), ("fake-browser-git-refs", "h2")},
    ),
    # Every hg wire command becomes an hgweb "page", unless the client also
    # sends an hg client's signature (hg-capabilities and hg-unbundle, from
    # a real client, still reach hg).
    "empty-wire-command-list": (
        empty_wire_command_list,
        {("fake-browser-hg-capabilities", "h1"), ("cmd-value-percent-encoded", "h2"),
         ("hg-args-in-query", "h1")},
    ),
    # A newer or an extension's wire command goes to the web pool again.
    "drop-hg-client-cmd-rule": (
        drop_hg_client_cmd_rule,
        {("hg-extension-cmd", "h1"), ("hg-unknown-cmd-post-body", "h2")},
    ),
    # Only HTTP/2 and absolute-form requests notice.
    "match-url-instead-of-path": (
        match_url_instead_of_path,
        {("git-lfs-upload-no-agent", "h2"), ("absolute-form-git-lfs", "h1")},
    ),
    # Names that begin like a routed one go to its shard.
    "match-map-prefix": (
        match_map_prefix,
        {("shard-trap-longer-name", "h1"), ("shard-trap-suffix", "h2"), ("shard-trap-hg-lfs-suffix", "h1")},
    ),
    # Other spellings of a routed repository stay home.
    "keep-case": (
        keep_case,
        {("shard-git-refs-upper-case", "h2"), ("shard-hg-getbundle-upper-case", "h1"),
         ("shard-git-lfs-upper-case", "h1")},
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_harness_fails_on_a_broken_rule(
    mutation: str,
    tmp_path: Path,
    tls: TlsFiles,
    echo_backends: dict[str, EchoBackend],
    shard_backends: dict[str, EchoBackend],
) -> None:
    mutate, must_fail = MUTATIONS[mutation]
    broken = tmp_path / "haproxy"
    shutil.copytree(HAPROXY_DIR, broken)
    mutate(broken)

    with table_proxy(broken, tmp_path / "run", tls, echo_backends, shard_backends) as proxy:
        outcomes = replay(proxy.https, CASES)

    failed = _failed(outcomes)
    assert must_fail <= failed, f"the harness missed {sorted(must_fail - failed)}"
    if mutation == "match-url-instead-of-path":
        # Origin-form HTTP/1.1 still passes: only the h2 transport and the
        # absolute-form cases can catch this mistake.
        assert all(
            transport == "h2" or name.startswith("absolute-form") for name, transport in failed
        ), sorted(failed)
