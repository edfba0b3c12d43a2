"""classify_hg: every wire command, hgweb, batches, strict parsing, and Mercurial's live tables."""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from gunicorn.util import unquote_to_wsgi_str
from hypothesis import given, settings
from hypothesis import strategies as st
from mercurial import wireprototypes, wireprotov1server
from mercurial.hgweb import webcommands

from singlemalt.classify_hg import classify_hg, wire_action
from singlemalt.target import Action, Malformed, Target
from tests.path_cases import PATH_CASES, SEGMENT, PathCase

REPO = "alice/demo"

# Mercurial's wire commands and the permission each needs.  If an upgrade
# changes this, the test below fails on purpose: review the change, then
# update this table.
EXPECTED_WIRE_PERMISSIONS = {
    b"batch": b"pull",
    b"between": b"pull",
    b"branches": b"pull",
    b"branchmap": b"pull",
    b"capabilities": b"pull",
    b"changegroup": b"pull",
    b"changegroupsubset": b"pull",
    b"clonebundles": b"pull",
    b"clonebundles_manifest": b"pull",
    b"debugwireargs": b"pull",
    b"get_cached_bundle_inline": b"pull",
    b"getbundle": b"pull",
    b"heads": b"pull",
    b"hello": b"pull",
    b"known": b"pull",
    b"listkeys": b"pull",
    b"lookup": b"pull",
    b"protocaps": b"pull",
    b"pushkey": b"push",
    b"stream_out": b"pull",
    b"unbundle": b"push",
}

EXPECTED_WEB_COMMANDS = [
    "annotate", "archive", "bookmarks", "branches", "changelog", "changeset", "comparison",
    "diff", "file", "filediff", "filelog", "graph", "help", "log", "manifest", "rawfile", "rev",
    "shortlog", "static", "summary", "tags",
]

ACTIONS = {b"pull": Action.READ, b"push": Action.WRITE}


def env(path: str = "/alice/demo", query: str = "", **headers: str) -> dict[str, Any]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
    environ.update(headers)
    return environ


def hgargs(args: dict[str, str], split: int = 0) -> dict[str, str]:
    """Wire arguments as X-HgArg-N headers, optionally split into ``split``-byte chunks."""
    encoded = urlencode(args)
    size = split or len(encoded)
    chunks = [encoded[i:i + size] for i in range(0, len(encoded), size)]
    return {f"HTTP_X_HGARG_{n}": chunk for n, chunk in enumerate(chunks, start=1)}


def test_mercurial_wire_table_is_the_reviewed_one() -> None:
    live = {name: command.permission for name, command in wireprotov1server.commands.items()}
    assert live == EXPECTED_WIRE_PERMISSIONS


def test_mercurial_web_commands_are_the_reviewed_ones() -> None:
    assert sorted(webcommands.__all__) == EXPECTED_WEB_COMMANDS


@pytest.mark.parametrize(
    ("cmd", "permission"),
    [pytest.param(cmd, perm, id=cmd.decode()) for cmd, perm in EXPECTED_WIRE_PERMISSIONS.items()
     if cmd != b"batch"],
)
def test_every_wire_command(cmd: bytes, permission: bytes) -> None:
    result = classify_hg(env(query="cmd=" + cmd.decode()))
    assert result == Target(REPO, ACTIONS[permission], "hg:" + cmd.decode())


@pytest.mark.parametrize("cmd", EXPECTED_WEB_COMMANDS)
def test_every_web_command_is_a_read(cmd: str) -> None:
    # "branches" is also a wire command, which hgweb dispatches first.
    label = "hg:" + cmd if cmd.encode() in EXPECTED_WIRE_PERMISSIONS else "hgweb:" + cmd
    assert classify_hg(env(query="cmd=" + cmd)) == Target(REPO, Action.READ, label)


def batch(cmds: str, **headers: str) -> dict[str, Any]:
    return env(query="cmd=batch", **(hgargs({"cmds": cmds}) | headers))


CASES = [
    pytest.param(env(), Target(REPO, Action.READ, "hgweb"), id="no-cmd"),
    pytest.param(env("/"), Target("", Action.READ, "hgweb"), id="index"),
    pytest.param(env("/alice/demo/log/tip", "style=raw"),
                 Target("alice/demo/log/tip", Action.READ, "hgweb"), id="browse-path"),
    pytest.param(env("/alice/demo/", "cmd=capabilities"),
                 Target(REPO, Action.READ, "hg:capabilities"), id="trailing-slash"),
    pytest.param(env(query="cmd=unbundle&heads=666f726365"),
                 Target(REPO, Action.WRITE, "hg:unbundle"), id="unbundle-with-args"),
    pytest.param(env(query="c%6Dd=unbundle"), Target(REPO, Action.WRITE, "hg:unbundle"),
                 id="percent-encoded-name"),
    pytest.param(env(query="cmd=frobnicate"), Target(REPO, Action.WRITE, "hg-unknown:frobnicate"),
                 id="unknown-cmd"),
    pytest.param(env(query="cmd="), Target(REPO, Action.WRITE, "hg-unknown:"), id="empty-cmd"),
    pytest.param(env(query="cmd=raw-rev"), Target(REPO, Action.WRITE, "hg-unknown:raw-rev"),
                 id="styled-cmd-in-query"),
    pytest.param(env(query="cmd=UNBUNDLE"), Target(REPO, Action.WRITE, "hg-unknown:UNBUNDLE"),
                 id="case-matters"),
    pytest.param(env(query="cmd=%0Aevil"), Target(REPO, Action.WRITE, "hg-unknown:\\nevil"),
                 id="control-in-cmd-is-escaped"),
    # batches
    pytest.param(batch("heads ;known nodes="), Target(REPO, Action.READ, "hg:batch"),
                 id="batch-reads"),
    pytest.param(batch("heads ;listkeys namespace=bookmarks;branchmap "),
                 Target(REPO, Action.READ, "hg:batch"), id="batch-three-reads"),
    pytest.param(batch("heads ;pushkey namespace=phases,key=x,old=,new=0"),
                 Target(REPO, Action.WRITE, "hg:batch"), id="batch-with-pushkey"),
    pytest.param(batch("unbundle heads=x"), Target(REPO, Action.WRITE, "hg:batch"),
                 id="batch-unbundle"),
    pytest.param(batch("heads ;frobnicate x=y"), Target(REPO, Action.WRITE, "hg:batch"),
                 id="batch-unknown-op"),
    pytest.param(batch("heads"), Target(REPO, Action.READ, "hg:batch"), id="batch-op-no-space"),
    pytest.param(batch(""), Target(REPO, Action.WRITE, "hg:batch"), id="batch-empty-cmds"),
    pytest.param(env(query="cmd=batch"), Target(REPO, Action.WRITE, "hg:batch"),
                 id="batch-no-cmds"),
    pytest.param(env(query="cmd=batch&" + urlencode({"cmds": "heads ;known nodes="})),
                 Target(REPO, Action.READ, "hg:batch"), id="batch-args-in-query"),
    pytest.param(env(query="cmd=batch&" + urlencode({"cmds": "heads ;unbundle heads="})),
                 Target(REPO, Action.WRITE, "hg:batch"), id="batch-query-push"),
    pytest.param(env(query="cmd=batch", **hgargs({"cmds": "heads ;known nodes=" + "ab" * 300},
                                                 split=64)),
                 Target(REPO, Action.READ, "hg:batch"), id="batch-split-headers"),
    pytest.param(env(query="cmd=batch", **hgargs({"cmds": "heads ;known nodes=;unbundle x="},
                                                 split=10)),
                 Target(REPO, Action.WRITE, "hg:batch"), id="batch-split-headers-push"),
    pytest.param(env(query="cmd=batch", HTTP_X_HGARG_1="cmds=heads+", HTTP_X_HGARG_3="%3Bunbundle"),
                 Target(REPO, Action.READ, "hg:batch"), id="batch-header-gap-ignored-like-hg"),
    pytest.param(batch("heads ", HTTP_X_HGARGS_POST="31"), Target(REPO, Action.WRITE, "hg:batch"),
                 id="batch-httppostargs"),
    pytest.param(batch("heads ", HTTP_X_HGARGS_POST=" 0 "), Target(REPO, Action.READ, "hg:batch"),
                 id="batch-httppostargs-zero"),
    pytest.param(batch("heads ", HTTP_X_HGARGS_POST="junk"),
                 Target(REPO, Action.WRITE, "hg:batch"), id="batch-httppostargs-junk"),
    pytest.param(env(query="cmd=getbundle", HTTP_X_HGARGS_POST="100"),
                 Target(REPO, Action.READ, "hg:getbundle"), id="postargs-non-batch"),
    # malformed
    pytest.param(batch("heads ;batch cmds=unbundle"), Malformed("nested batch"), id="nested-batch"),
    pytest.param(env(query="cmd=batch&" + urlencode({"cmds": "heads "}), **hgargs({"cmds": "x "})),
                 Malformed("ambiguous parameter: cmds"), id="batch-cmds-in-query-and-headers"),
    pytest.param(env(query="cmd=batch", **hgargs({"cmd": "unbundle"})),
                 Malformed("ambiguous parameter: cmd"), id="cmd-in-headers"),
    pytest.param(env(query="cmd=batch", HTTP_X_HGARG_1="cmds=heads+&cmds=unbundle+"),
                 Malformed("ambiguous parameter: cmds"), id="batch-duplicate-in-headers"),
    pytest.param(env(query="cmd=capabilities&cmd=unbundle"), Malformed("ambiguous parameter: cmd"),
                 id="duplicate-cmd"),
    pytest.param(env(query="cmd=heads&x=1&x=2"), Malformed("ambiguous parameter: x"),
                 id="duplicate-other"),
    pytest.param(env(query="cmd=%ff"), Malformed("undecodable query string"), id="bad-escape"),
    pytest.param(env(query="cmd=caf%C3%A9"), Malformed("undecodable query string"),
                 id="utf8-escape-hg-cannot-parse"),
    pytest.param(env(query="cmd=\u00e9"), Malformed("undecodable query string"),
                 id="raw-latin1"),
    pytest.param(env(query="cmd=\u20ac"), Malformed("not a WSGI native string"),
                 id="not-latin1"),
    pytest.param(env(query="cmd=batch", HTTP_X_HGARG_1="cmds=\u20ac"),
                 Malformed("not a WSGI native string"), id="header-not-latin1"),
    pytest.param(env("/alice/../bob"), Malformed(SEGMENT), id="dot-dot"),
    pytest.param(env("/alice//demo"), Malformed(SEGMENT), id="double-slash"),
    pytest.param(env("/alice/demo\x00"), Malformed("control character in path"), id="nul"),
    pytest.param({"PATH_INFO": 7}, Malformed("unsafe path"), id="path-not-str"),
]


@pytest.mark.parametrize(("environ", "expected"), CASES)
def test_classify_hg(environ: dict[str, Any], expected: Target | Malformed) -> None:
    assert classify_hg(environ) == expected


@pytest.mark.parametrize("case", PATH_CASES, ids=[case.name for case in PATH_CASES])
def test_path_table_shared_with_haproxy(case: PathCase) -> None:
    """The raw request target (gunicorn's RAW_URI) is judged as HAProxy judges it."""
    environ = env(unquote_to_wsgi_str(case.path), "cmd=capabilities")
    environ["RAW_URI"] = case.path + "?cmd=capabilities"
    result = classify_hg(environ)
    if case.reason is None:
        assert isinstance(result, Target), result
    else:
        assert result == Malformed(case.reason)


def test_wire_action_unknown_is_write() -> None:
    assert wire_action(b"nope") is Action.WRITE


def command(permission: bytes) -> wireprototypes.commandentry:
    return wireprototypes.commandentry(lambda repo, proto: b"", args=b"", permission=permission)


def test_wire_action_odd_permission_is_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(wireprotov1server.commands, b"odd", command(b"admin"))
    assert wire_action(b"odd") is Action.WRITE
    assert classify_hg(env(query="cmd=odd")) == Target(REPO, Action.WRITE, "hg:odd")


def test_a_changed_permission_is_picked_up_from_mercurial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(wireprotov1server.commands, b"heads", command(b"push"))
    assert classify_hg(env(query="cmd=heads")).action is Action.WRITE  # type: ignore[union-attr]
    assert classify_hg(batch("heads ")).action is Action.WRITE  # type: ignore[union-attr]


# Everything that is READ without being a pull command or a web command would be a leak.
_READ_CMDS = {c for c, p in EXPECTED_WIRE_PERMISSIONS.items() if p == b"pull"} | {
    c.encode() for c in EXPECTED_WEB_COMMANDS}


@settings(database=None, deadline=None)
@given(path=st.text(max_size=60), query=st.text(max_size=80),
       headers=st.dictionaries(st.sampled_from(["HTTP_X_HGARG_1", "HTTP_X_HGARG_2",
                                                "HTTP_X_HGARGS_POST"]),
                               st.text(max_size=60)))
def test_never_raises(path: str, query: str, headers: dict[str, str]) -> None:
    result = classify_hg(env(path, query, **headers))
    assert isinstance(result, Target | Malformed)


@settings(database=None, deadline=None)
@given(cmd=st.text(max_size=30), cmds=st.text(max_size=60))
def test_unknown_commands_are_never_read(cmd: str, cmds: str) -> None:
    result = classify_hg(env(query=f"cmd={quote(cmd)}", **hgargs({"cmds": cmds})))
    if isinstance(result, Target) and result.action is Action.READ:
        assert cmd.encode() in _READ_CMDS
        if cmd == "batch":
            ops = {pair.partition(" ")[0].encode() for pair in cmds.split(";")}
            assert ops <= _READ_CMDS - {b"batch"}


@settings(database=None, deadline=None)
@given(ops=st.lists(st.sampled_from(sorted(EXPECTED_WIRE_PERMISSIONS)), min_size=1, max_size=6))
def test_batch_is_write_iff_any_op_pushes(ops: list[bytes]) -> None:
    result = classify_hg(batch(";".join(op.decode() + " " for op in ops)))
    if b"batch" in ops:
        assert result == Malformed("nested batch")
    else:
        pushes = any(EXPECTED_WIRE_PERMISSIONS[op] == b"push" for op in ops)
        assert result == Target(REPO, Action.WRITE if pushes else Action.READ, "hg:batch")


def test_importing_singlemalt_does_not_import_mercurial() -> None:
    """A git-only application mounting singlemalt does not pay Mercurial's ~0.4 s import."""
    probe = "import sys, singlemalt; print(sorted(m for m in sys.modules if m.startswith('mercurial')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
