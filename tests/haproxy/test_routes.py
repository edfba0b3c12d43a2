"""The route table harness: haproxy/routes.txt replayed through the real HAProxy.

Every case is sent over HTTP/1.1 and over HTTP/2 (both TLS) to HAProxy running
``haproxy/haproxy.cfg`` unmodified, with echo servers standing in for the git,
hg and web pools; each case x transport is one test, so a failure names the
case, the transport, the pool expected and the pool (and rule) it got.

The harness is itself tested: a copy of haproxy/ with a rule broken on purpose
must produce failures, or the harness proves nothing.

Run alone with ``make check-routes``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mercurial import wireprotov1server

from hostd.ops.tls import TlsFiles

from .conftest import HAPROXY_DIR, backend_addresses
from .echo_backend import EchoBackend
from .haproxy_runner import HAProxy
from .replay import TRANSPORTS, Outcome, replay, run_case
from .route_table import POOLS, RouteCase, load_route_table

CASES = load_route_table(HAPROXY_DIR / "routes.txt")


def test_config_is_valid_without_warnings(tmp_path: Path, tls: TlsFiles) -> None:
    addresses = {pool: "127.0.0.1:1" for pool in POOLS}
    result = HAProxy(HAPROXY_DIR, tmp_path, tls, addresses).check()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output, output


def test_wire_command_list_is_mercurials_table() -> None:
    """An hg upgrade that adds a wire command must not send it to the web pool."""
    listed = {
        line.strip()
        for line in (HAPROXY_DIR / "hg-wire-commands.lst").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    live = {name.decode() for name in wireprotov1server.commands}
    assert listed == live, f"missing: {sorted(live - listed)}, stale: {sorted(listed - live)}"


def test_route_table_covers_every_pool() -> None:
    assert len(CASES) >= 45
    assert {case.expected for case in CASES} == set(POOLS)


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
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_harness_fails_on_a_broken_rule(
    mutation: str,
    tmp_path: Path,
    tls: TlsFiles,
    echo_backends: dict[str, EchoBackend],
) -> None:
    mutate, must_fail = MUTATIONS[mutation]
    broken = tmp_path / "haproxy"
    shutil.copytree(HAPROXY_DIR, broken)
    mutate(broken)

    proxy = HAProxy(broken, tmp_path / "run", tls, backend_addresses(echo_backends))
    with proxy:
        outcomes = replay(proxy.https, CASES)

    failed = _failed(outcomes)
    assert must_fail <= failed, f"the harness missed {sorted(must_fail - failed)}"
    if mutation == "match-url-instead-of-path":
        # Origin-form HTTP/1.1 still passes: only the h2 transport and the
        # absolute-form cases can catch this mistake.
        assert all(
            transport == "h2" or name.startswith("absolute-form") for name, transport in failed
        ), sorted(failed)
