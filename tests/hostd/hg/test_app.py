"""The hg pool app under WebTest: dispatch, hgweb's second line of defence,
and the push log (real bundle2 pushes, built with Mercurial's own code)."""

from __future__ import annotations

import functools
import io
import logging
import os
import subprocess
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import webtest
from mercurial import bookmarks as bookmod
from mercurial import bundle2, changegroup, discovery, hg, wireprototypes, wireprotov1server
from mercurial import ui as uimod
from mercurial.hgweb import webcommands
from mercurial.node import bin

from hostd.hg.app import HgApp
from hostd.names import RepoName
from hostd.store.accounts import Accounts
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.storage import Storage, hg_command
from singlemalt import Action, Allowed, SingleMalt, Target, Verifier, classify_hg
from tests import pg
from tests.hostd.conftest import Site


class DummyAuthorized:
    """Stands in for singlemalt: marks every request as authorized for ``action``,
    for the user named by ``test.user`` in the environ (default alice)."""

    def __init__(self, app: Any, action: Action | None) -> None:
        self.app = app
        self.action = action

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.action is not None:
            environ["singlemalt.target"] = Target(environ["PATH_INFO"].strip("/"), self.action, "test")
            environ["REMOTE_USER"] = environ.get("test.user", "alice")
        return self.app(environ, start_response)


def _app(site: Site, action: Action | None) -> webtest.TestApp:
    app = HgApp(site.storage)
    # With no action, nothing stands in for singlemalt: no target, no decision.
    inner = app if action is None else site.decided(app, "hg")
    return webtest.TestApp(DummyAuthorized(inner, action), extra_environ={"wsgi.url_scheme": "https"})


def test_capabilities(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    response = _app(site, Action.READ).get("/alice/notes?cmd=capabilities")
    assert b"unbundle" in response.body


def test_full_clones_are_offered_as_stream_clones(site: Site) -> None:
    """``stream-preferred`` is what makes a client's plain ``hg clone`` a stream clone."""
    site.repo("alice", "notes", "hg")
    capabilities = _app(site, Action.READ).get("/alice/notes?cmd=capabilities").body.split()
    assert b"stream-preferred" in capabilities
    assert any(cap.startswith(b"streamreqs=") for cap in capabilities)


def test_unknown_repository_and_git_repository_are_not_found(site: Site) -> None:
    site.repo("alice", "code", "git")
    app = _app(site, Action.READ)
    app.get("/alice/nothing?cmd=capabilities", status=404)
    app.get("/alice/code?cmd=capabilities", status=404)
    app.get("/alice/notes/extra?cmd=capabilities", status=404)


def test_push_without_a_write_authorization_is_refused_by_hgweb(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    response = _app(site, Action.READ).post(
        "/alice/notes?cmd=unbundle&heads=" + "30" * 20, b"", content_type="application/mercurial-0.1",
        status=403,
    )
    assert b"push not authorized" in response.body


def test_request_that_bypassed_singlemalt_is_refused(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    # No decision carries the repository: not found, before hgweb is reached.
    _app(site, None).get("/alice/notes?cmd=capabilities", status=404)
    # A decision but no classified target: hgweb's permission hook still refuses.
    repo = site.policy("hg").resolve("alice/notes")
    app = webtest.TestApp(HgApp(site.storage), extra_environ={"wsgi.url_scheme": "https"})
    app.get("/alice/notes?cmd=capabilities", status=401,
            extra_environ={"singlemalt.decision": Allowed("test", resource=repo)})


def test_hgweb_instances_are_reused_until_the_repository_is_replaced(site: Site) -> None:
    ref = site.repo("alice", "notes", "hg")
    hg = HgApp(site.storage)
    first = hg._hgweb_for(site.storage.path(ref, "hg"))
    assert hg._hgweb_for(site.storage.path(ref, "hg")) is first
    site.storage.delete(ref, "hg")
    site.storage.create(ref, "hg")
    assert hg._hgweb_for(site.storage.path(ref, "hg")) is not first


# -- the push log ------------------------------------------------------------

ZERO = "0" * 40
FORCE = b"force".hex()  # the unbundle "heads" argument that skips the race check


class DummyPushLog:
    """Collects what HgApp records; ``fail`` makes every record raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.records: list[tuple[RepoName, str, list[tuple[str, str, str]]]] = []
        self._lock = threading.Lock()

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None:
        if self.fail:
            raise DatabaseUnavailable("connection refused")
        with self._lock:
            self.records.append((repo, username, updates))


class Local:
    """A local clone of a served repository that makes commits and push bundles."""

    def __init__(self, server: Path, path: Path) -> None:
        self.server = server
        self.path = path
        self._hg("clone", "-q", str(server), str(path), cwd=server.parent)

    def _hg(self, *args: str, cwd: Path | None = None) -> str:
        env = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": "/usr/bin:/bin"}
        command = [*hg_command(), "--config", "ui.username=t <t@example.com>", *args]
        return subprocess.run(command, cwd=cwd or self.path, env=env, check=True,
                              capture_output=True, text=True).stdout

    def commit(self, name: str, *, parent: str | None = None, branch: str | None = None) -> str:
        """Commit a new file on ``parent`` (default: the working copy); return the node."""
        if parent is not None:
            self._hg("update", "-q", "-r", parent)
        if branch is not None:
            self._hg("branch", "-q", branch)
        (self.path / name).write_text(name)
        self._hg("commit", "-q", "-A", "-m", name)
        return self.node(".")

    def node(self, rev: str) -> str:
        """The full hash of ``rev``, read in-process (a subprocess per lookup is slow)."""
        return str(hg.repository(uimod.ui(), os.fsencode(self.path))[rev.encode()].hex().decode())

    def bundle(self, heads: list[str], bookmarks: dict[str, str | None] | None = None) -> bytes:
        """A bundle2 push of ``heads`` (what the server lacks) and bookmark moves
        (None deletes), built the way ``hg push`` builds one."""
        ui = uimod.ui()
        repo = hg.repository(ui, os.fsencode(self.path))
        server = hg.repository(ui, os.fsencode(self.server))
        bundler = bundle2.bundle20(ui)
        # Without replycaps the server sends no reply bundle (and hgweb fails).
        bundler.newpart(b"replycaps", data=bundle2.encodecaps(bundle2.getrepocaps(repo, role=b"client")))
        if heads:
            outgoing = discovery.outgoing(repo, commonheads=server.heads(), ancestorsof=[bin(h) for h in heads])
            part = bundler.newpart(b"changegroup", data=changegroup.makestream(repo, outgoing, b"02", b"push"))
            part.addparam(b"version", b"02")
        if bookmarks:
            moves = [(name.encode(), None if node is None else bin(node)) for name, node in bookmarks.items()]
            bundler.newpart(b"bookmarks", data=bookmod.binaryencode(repo, moves))
        return b"".join(bundler.getchunks())


def _reply_parts(body: bytes) -> list[bytes]:
    """The part types of an unbundle reply: ``error:abort`` marks a refused push."""
    unbundler = bundle2.getunbundler(uimod.ui(), io.BytesIO(body))
    return [part.type for part in unbundler.iterparts()]


def _push(app: webtest.TestApp, repo: RepoName, body: bytes, user: str = "alice") -> list[bytes]:
    response = app.post(
        f"/{repo}?cmd=unbundle&heads={FORCE}", body, content_type="application/mercurial-0.1",
        extra_environ={"test.user": user},
    )
    return _reply_parts(response.body)


def _pushlog_app(site: Site, pushlog: DummyPushLog) -> tuple[HgApp, webtest.TestApp]:
    hgapp = HgApp(site.storage, pushlog=pushlog)
    return hgapp, webtest.TestApp(DummyAuthorized(site.decided(hgapp, "hg"), Action.WRITE),
                                  extra_environ={"wsgi.url_scheme": "https"})


def _tip(path: Path) -> str:
    return subprocess.run([*hg_command(), "-R", str(path), "log", "-r", "tip", "-T", "{node}"],
                          env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"}, check=True,
                          capture_output=True, text=True).stdout


def test_push_records_branch_head_and_bookmark_with_the_pushing_user(site: Site, tmp_path: Path) -> None:
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    base = _tip(server)
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    pushlog = DummyPushLog()
    _, app = _pushlog_app(site, pushlog)

    assert b"error:abort" not in _push(app, ref, local.bundle([node], {"feat": node}), user="bob")

    assert _tip(server) == node
    assert pushlog.records == [
        (ref, "bob", [("branch:default", base, node), ("bookmark:feat", ZERO, node)]),
    ]


def test_named_branch_merge_and_bookmark_deletion(site: Site, tmp_path: Path) -> None:
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    base = _tip(server)
    local = Local(server, tmp_path / "local")
    stable = local.commit("stable.txt", branch="stable")
    pushlog = DummyPushLog()
    _, app = _pushlog_app(site, pushlog)
    _push(app, ref, local.bundle([stable], {"release": stable}))
    assert pushlog.records[-1][2] == [("branch:stable", ZERO, stable), ("bookmark:release", ZERO, stable)]

    # Two new default heads in one push: one replaces the old head, the other is added beside it.
    first = local.commit("a.txt", parent=base)
    second = local.commit("b.txt", parent=base)
    _push(app, ref, local.bundle([first, second]))
    assert pushlog.records[-1][2] == [("branch:default", base, first), ("branch:default", base, second)]

    local._hg("merge", "-q", "-r", first)
    local._hg("commit", "-q", "-m", "merge")
    merge = local.node(".")
    _push(app, ref, local.bundle([merge], {"release": None}))
    assert pushlog.records[-1][2] == [
        ("branch:default", first, merge), ("branch:default", second, merge), ("bookmark:release", stable, ZERO),
    ]


def test_refused_push_records_nothing(site: Site, tmp_path: Path) -> None:
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    base = _tip(server)
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    pushlog = DummyPushLog()
    _, app = _pushlog_app(site, pushlog)
    # Mercurial aborts the transaction after the changesets went in: a divergent bookmark name.
    assert b"error:abort" in _push(app, ref, local.bundle([node], {"feat@other": node}))
    assert _tip(server) == base
    assert pushlog.records == []
    # The next push through the same (reused) repository object is recorded normally.
    _push(app, ref, local.bundle([node]))
    assert pushlog.records == [(ref, "alice", [("branch:default", base, node)])]


def test_a_push_log_failure_does_not_undo_or_fail_the_push(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    _, app = _pushlog_app(site, DummyPushLog(fail=True))
    with caplog.at_level(logging.ERROR, logger="hostd.hg.hooks"):
        assert b"error:abort" not in _push(app, ref, local.bundle([node]))
    assert _tip(server) == node
    assert "not recorded" in caplog.text


def test_without_a_push_log_no_hooks_are_installed(site: Site, tmp_path: Path) -> None:
    ref = site.repo("alice", "notes", "hg")
    hgapp = HgApp(site.storage)
    assert hgapp._ui.configitems(b"hooks") == []
    server = site.storage.path(ref, "hg")
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    app = webtest.TestApp(DummyAuthorized(site.decided(hgapp, "hg"), Action.WRITE),
                          extra_environ={"wsgi.url_scheme": "https"})
    assert b"error:abort" not in _push(app, ref, local.bundle([node]))
    assert _tip(server) == node


def test_concurrent_pushes_are_attributed_to_their_own_users(site: Site, tmp_path: Path) -> None:
    """hgweb hands each thread its own repository object; each push's recorder
    rides on its own environ, so entries never cross between requests."""
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    base = _tip(server)
    local = Local(server, tmp_path / "local")
    users = [f"user{i}" for i in range(4)]
    nodes = {user: local.commit(f"{user}.txt", parent=base) for user in users}
    bundles = {user: local.bundle([nodes[user]], {user: nodes[user]}) for user in users}
    pushlog = DummyPushLog()
    _, app = _pushlog_app(site, pushlog)
    barrier = threading.Barrier(len(users), timeout=30)

    def push(user: str) -> list[bytes]:
        barrier.wait()
        return _push(app, ref, bundles[user], user=user)

    with ThreadPoolExecutor(len(users)) as pool:
        replies = list(pool.map(push, users))
    assert all(b"error:abort" not in reply for reply in replies)
    assert len(pushlog.records) == len(users)
    for _, user, updates in pushlog.records:
        assert ("bookmark:" + user, ZERO, nodes[user]) in updates
        assert all(new == nodes[user] for _, _, new in updates)


def _kill_mid_push(local: Local, server: Path, node: str) -> None:
    """``hg unbundle`` of ``node`` into ``server``, SIGKILLed by a hook inside its transaction."""
    bundle = local.path.parent / "killed.hg"
    local._hg("bundle", "-q", "-r", node, "--base", "null", str(bundle))
    killed = subprocess.run([*hg_command(), "-R", str(server), "unbundle", str(bundle), "--config",
                             "hooks.pretxnchangegroup=kill -9 $PPID"],
                            env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"}, capture_output=True, check=False)
    assert killed.returncode != 0, killed
    assert (server / ".hg" / "store" / "journal").exists()


def test_a_push_after_a_killed_push_rolls_its_transaction_back(site: Site, tmp_path: Path) -> None:
    """A worker SIGKILLed inside unbundle leaves ``store/journal`` (and a lock
    whose holder is dead); Mercurial refuses every later push ("abandoned
    transaction found") until someone runs ``hg recover``: the next push does."""
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    base = _tip(server)
    pushlog = DummyPushLog()
    hgapp, app = _pushlog_app(site, pushlog)
    hgapp._hgweb_for(server)  # hgweb first: see test_capabilities (Mercurial's import order)
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    _kill_mid_push(local, server, node)
    assert _tip(server) == base

    assert b"error:abort" not in _push(app, ref, local.bundle([node]))
    assert _tip(server) == node
    assert not (server / ".hg" / "store" / "journal").exists()
    assert pushlog.records == [(ref, "alice", [("branch:default", base, node)])]


def test_a_read_leaves_an_abandoned_transaction_alone(site: Site, tmp_path: Path) -> None:
    """Clones and pulls never wait for the store lock: only a write recovers."""
    ref = site.repo("alice", "notes", "hg")
    server = site.storage.path(ref, "hg")
    app = _app(site, Action.READ)
    app.get(f"/{ref}?cmd=capabilities")
    local = Local(server, tmp_path / "local")
    _kill_mid_push(local, server, local.commit("one.txt"))
    app.get(f"/{ref}?cmd=heads")
    assert (server / ".hg" / "store" / "journal").exists()


# -- hostile arguments: every wire command and page, from Mercurial's own tables ---

UNKNOWN_NODE = "0123456789abcdef0123456789abcdef01234567"
#: Bogus values for every argument: unknown but well-formed nodes, non-hex and
#: wrong-length nodes, numbers, paths that try to leave the repository, and
#: names longer than a bundle2 parameter (255 bytes) may be.
BOGUS = {
    "unknown-node": UNKNOWN_NODE,
    "node-list": f"{UNKNOWN_NODE} {ZERO}",
    "node-pair": f"{UNKNOWN_NODE}-{ZERO}",
    "non-hex": "zz" * 20,
    "short-hex": "abcd",
    "odd-hex": "abc",
    "empty": "",
    "negative": "-1",
    "huge": "9" * 400,
    "parent-path": "../../../etc/passwd",
    "absolute-path": "/etc/passwd",
    "nul": "a\x00b",
    "long-name": "n" * 300,
    "separators": "a;b,c=d e",
}
#: What the other arguments hold while one is bogus: well-formed enough that
#: the command gets as far as it can (getbundle only streams for bundle2).
WELL_FORMED = {
    "bundlecaps": "HG20,bundle2=" + quote("HG20\nchangegroup=01,02\nlistkeys\nphases=heads\nbookmarks"),
    "common": ZERO, "cg": "1", "listkeys": "phases,bookmarks", "phases": "1", "bookmarks": "1",
}
#: Arguments a ``*`` command reads besides its named ones.
STAR_ARGUMENTS = {b"getbundle": sorted(k.decode() for k in wireprototypes.GETBUNDLE_ARGUMENTS),
                  b"debugwireargs": ["three", "four"]}
TRANSPORTS = ["query", "headers", "post"]


def _guarded(site: Site) -> webtest.TestApp:
    """HgApp behind singlemalt, as the hg pool runs it; ``REMOTE_USER`` stands in for a
    verified password (hashing one per request would make the tables slow)."""
    guarded = SingleMalt(HgApp(site.storage), classify=classify_hg,
                         verifier=Verifier(site.accounts), authorize=site.policy("hg"), realm="test",
                         trust_remote_user=True)
    return webtest.TestApp(guarded, extra_environ={"wsgi.url_scheme": "https"})


def _arguments(cmd: bytes) -> list[str]:
    entry = wireprotov1server.commands[cmd]
    return [name.decode() for name in entry.args.split() if name != b"*"] + STAR_ARGUMENTS.get(cmd, [])


def _well_formed(cmd: str, name: str) -> str | None:
    """A harmless value for argument ``name``; None leaves an optional one out."""
    if name in WELL_FORMED:
        return WELL_FORMED[name]
    named = [arg.decode() for arg in wireprotov1server.commands[cmd.encode()].args.split()]
    return UNKNOWN_NODE if name in named else None


def _wire(app: webtest.TestApp, path: str, cmd: str, args: dict[str, str], transport: str,
          environ: dict[str, str]) -> webtest.TestResponse:
    """One wire command with ``args`` sent the way ``transport`` says, as hg's httppeer does."""
    encoded = urlencode(args)
    headers = {"Accept": "application/mercurial-0.1"}
    url = f"{path}?cmd={cmd}"
    if transport == "query" and encoded:
        url += "&" + encoded
    elif transport == "headers" and encoded:
        headers["X-HgArg-1"] = encoded
    elif transport == "post" and encoded:
        headers["X-HgArgs-Post"] = str(len(encoded))
        return app.post(url, encoded.encode(), headers=headers, content_type="application/mercurial-0.1",
                        extra_environ=environ, expect_errors=True)
    if cmd in ("unbundle", "pushkey"):
        return app.post(url, b"", headers=headers, content_type="application/mercurial-0.1",
                        extra_environ=environ, expect_errors=True)
    return app.get(url, headers=headers, extra_environ=environ, expect_errors=True)


def _clean(response: webtest.TestResponse, what: str) -> None:
    assert response.status_int < 500, (what, response.status, response.body[:300])
    assert b"Traceback" not in response.body, (what, response.body[:300])


IDENTITIES: dict[str, dict[str, str]] = {"anonymous": {}, "writer": {"REMOTE_USER": "alice"}}
#: The values tried one argument at a time (the rest well-formed); every value is tried in all arguments at once.
SINGLY = ["unknown-node", "non-hex", "empty", "long-name", "absolute-path"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[webtest.TestApp, str]:
    """One public repository of alice's behind singlemalt, shared by the table tests (they only read)."""
    root = tmp_path_factory.mktemp("hostile")
    site = Site(Accounts(Database(pg.new_database())), Storage(root / "repos"))
    ref = site.repo("alice", "pub", "hg", public=True)
    return _guarded(site), f"/{ref}"


@pytest.mark.parametrize("identity", sorted(IDENTITIES))
@pytest.mark.parametrize("cmd", sorted(c.decode() for c in wireprotov1server.commands))
def test_every_wire_command_answers_bogus_arguments_with_a_4xx(
    hostile: tuple[webtest.TestApp, str], cmd: str, identity: str
) -> None:
    """Driven by Mercurial's command table: a command a Mercurial upgrade adds is covered here."""
    app, path = hostile
    environ = IDENTITIES[identity]
    _clean(_wire(app, path, cmd, {}, "query", environ), f"{cmd} without arguments")
    names = _arguments(cmd.encode()) or ["extra"]
    for label, value in BOGUS.items():
        for transport in TRANSPORTS:
            for bogus in ["all", *(names if label in SINGLY and len(names) > 1 else [])]:
                chosen = {name: value if bogus in (name, "all") else _well_formed(cmd, name) for name in names}
                args = {name: arg for name, arg in chosen.items() if arg is not None}
                _clean(_wire(app, path, cmd, args, transport, environ), f"{cmd} {bogus}={label} by {transport}")


@pytest.mark.parametrize("cmd", sorted(c.decode() for c in wireprotov1server.commands if c != b"batch"))
def test_every_wire_command_in_a_batch_answers_with_a_4xx(hostile: tuple[webtest.TestApp, str], cmd: str) -> None:
    app, path = hostile
    names = _arguments(cmd.encode())
    for label, value in BOGUS.items():
        escaped = wireprototypes.escapebatcharg(value.encode()).decode("latin-1")
        batch = cmd + " " + ",".join(f"{name}={escaped}" for name in names)
        for identity, environ in IDENTITIES.items():
            for transport in TRANSPORTS:
                _clean(_wire(app, path, "batch", {"cmds": batch}, transport, environ),
                       f"batch of {cmd} with {label} by {transport} as {identity}")


@pytest.mark.parametrize("page", sorted(webcommands.__all__))
def test_every_hgweb_page_answers_bogus_arguments_with_a_4xx(hostile: tuple[webtest.TestApp, str], page: str) -> None:
    """The pages hgweb serves at the repository's root (``?cmd=<page>``), from hgweb's own list."""
    app, path = hostile
    for label, value in BOGUS.items():
        for name in ("node", "file", "rev", "revcount"):
            query = urlencode({"cmd": page, "node": "tip", name: value})
            _clean(app.get(f"{path}?{query}", expect_errors=True), f"{page} {name}={label}")


@pytest.mark.parametrize("cmd", ["nosuchcommand", "x_rfl_getfile", "debugwireargs2", "capabilities2"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_commands_are_refused_as_writes_and_answered_cleanly(
    hostile: tuple[webtest.TestApp, str], cmd: str, method: str
) -> None:
    """singlemalt classifies an unknown command as a write (401 for a stranger);
    the writer it lets through gets hgweb's 400, not a 500."""
    app, path = hostile
    send = app.get if method == "GET" else functools.partial(app.post, params=b"x" * 100)
    assert send(f"{path}?cmd={cmd}", expect_errors=True).status_int == 401
    writer = send(f"{path}?cmd={cmd}", extra_environ=IDENTITIES["writer"], expect_errors=True)
    assert writer.status_int == 400, writer.status
    assert b"Traceback" not in writer.body


@pytest.mark.parametrize(("query", "headers", "status", "reason"), [
    (f"cmd=changegroup&roots={UNKNOWN_NODE}", {}, 404, b"unknown revision"),
    ("cmd=changegroup&roots=", {}, 400, b"malformed"),
    ("cmd=known&nodes=zz", {}, 400, b"malformed"),
    ("cmd=batch&cmds=stream_out+", {}, 400, b"batch"),
    ("cmd=batch&cmds=heads+%3Bunbundle+heads%3D", {}, 401, b"authentication required"),  # a write: challenged
    ("cmd=getbundle&listkeys=" + "n" * 256, {}, 400, b"listkeys"),
    ("cmd=get_cached_bundle_inline&path=/etc/passwd", {}, 404, b"clone bundle not found"),
    ("cmd=get_cached_bundle_inline&path=../requires", {}, 404, b"clone bundle not found"),
    ("cmd=get_cached_bundle_inline&path=missing.hg", {}, 404, b"clone bundle not found"),
    ("cmd=heads", {"X-HgArgs-Post": "5"}, 400, b"httppostargs"),
    ("cmd=heads", {"X-HgArgs-Post": "-1"}, 400, b"httppostargs"),
    ("cmd=static&file=../../etc/passwd", {}, 404, b"not found"),
    ("cmd=static&file=" + "s" * 300, {}, 404, b"not found"),
], ids=["unknown-root", "no-roots", "non-hex", "batched-stream", "batched-write", "long-listkeys",
        "inline-absolute", "inline-parent", "inline-missing", "post-args", "post-args-negative", "static-parent",
        "static-too-long"])
def test_hostile_requests_get_a_clear_answer(hostile: tuple[webtest.TestApp, str], query: str,
                                             headers: dict[str, str], status: int, reason: bytes) -> None:
    app, path = hostile
    response = app.get(f"{path}?{query}", headers=headers, status=status)
    assert reason in response.body


def test_an_inline_clone_bundle_in_the_cache_is_still_served(site: Site) -> None:
    ref = site.repo("alice", "notes", "hg", public=True)
    cache = site.storage.path(ref, "hg") / ".hg" / "bundle-cache"
    cache.mkdir()
    (cache / "full.hg").write_bytes(b"HG20 a bundle")
    (cache / "sub").mkdir()
    app = _guarded(site)
    response = app.get(f"/{ref}?cmd=get_cached_bundle_inline&path=full.hg")
    assert zlib.decompress(response.body).endswith(b"HG20 a bundle")  # the 0.1 media type is zlib
    app.get(f"/{ref}?cmd=get_cached_bundle_inline&path=sub", status=404)  # a directory: hgweb would fail mid-stream


def test_page_urls_come_from_the_configured_base_url_not_the_host_header(site: Site) -> None:
    """hgweb completes its absolute URLs (feeds, ``urlbase``) from SERVER_NAME, which servers take from Host."""
    site.repo("alice", "feed", "hg")
    app = HgApp(site.storage, base_url="https://hg.example.test:8443")
    client = webtest.TestApp(DummyAuthorized(site.decided(app, "hg"), Action.READ),
                             extra_environ={"wsgi.url_scheme": "https"})
    forged = {"HTTP_HOST": "evil.example", "SERVER_NAME": "evil.example", "SERVER_PORT": "443"}
    body = client.get("/alice/feed?cmd=log&style=atom", extra_environ=forged).text
    assert "https://hg.example.test:8443/" in body
    assert "evil.example" not in body
