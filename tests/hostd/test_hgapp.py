"""The hg pool app under WebTest: dispatch, hgweb's second line of defence,
and the push log (real bundle2 pushes, built with Mercurial's own code)."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import webtest
from mercurial import bookmarks as bookmod
from mercurial import bundle2, changegroup, discovery, hg
from mercurial import ui as uimod
from mercurial.node import bin

from hostd.hgapp import HgApp
from hostd.names import RepoName
from hostd.storage import hg_command
from singlemalt import Action, Target
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
    app = HgApp(site.policy("hg").resolve, site.storage)
    return webtest.TestApp(DummyAuthorized(app, action), extra_environ={"wsgi.url_scheme": "https"})


def test_capabilities(site: Site) -> None:
    site.repo("alice", "notes", "hg")
    response = _app(site, Action.READ).get("/alice/notes?cmd=capabilities")
    assert b"unbundle" in response.body


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
    _app(site, None).get("/alice/notes?cmd=capabilities", status=401)


def test_hgweb_instances_are_reused_until_the_repository_is_replaced(site: Site) -> None:
    ref = site.repo("alice", "notes", "hg")
    hg = HgApp(site.policy("hg").resolve, site.storage)
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
            raise sqlite3.OperationalError("database is locked")
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
    hgapp = HgApp(site.policy("hg").resolve, site.storage, pushlog=pushlog)
    return hgapp, webtest.TestApp(DummyAuthorized(hgapp, Action.WRITE), extra_environ={"wsgi.url_scheme": "https"})


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
    with caplog.at_level(logging.ERROR, logger="hostd.hgpushlog"):
        assert b"error:abort" not in _push(app, ref, local.bundle([node]))
    assert _tip(server) == node
    assert "not recorded" in caplog.text


def test_without_a_push_log_no_hooks_are_installed(site: Site, tmp_path: Path) -> None:
    ref = site.repo("alice", "notes", "hg")
    hgapp = HgApp(site.policy("hg").resolve, site.storage)
    assert hgapp._ui.configitems(b"hooks") == []
    server = site.storage.path(ref, "hg")
    local = Local(server, tmp_path / "local")
    node = local.commit("one.txt")
    app = webtest.TestApp(DummyAuthorized(hgapp, Action.WRITE), extra_environ={"wsgi.url_scheme": "https"})
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
