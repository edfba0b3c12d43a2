"""Upgrading an installation of the SQLite release: ``make up`` on the old checkout, then on this one.

The previous release (the last commit before PostgreSQL) is taken from git
history with ``git archive`` and run from its own tree with this
virtualenv: its stack, its command line, its SQLite file. Users, tokens,
grants, repositories, flags and pushes (real git and hg pushes over HTTPS)
are made through it; then this release's stack starts on the same data
directory, imports the file once, and everything must still be there and
still work: the old passwords and tokens log in, revoked tokens stay
revoked, grants decide as before, and the push log reads the same.
"""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hostd.settings import PROJECT_ROOT, Settings
from tests import pg
from tests.e2e.stackfixture import PORT_NAMES, Clients, Stack, start_stack, stop_stack
from tests.ports import free_ports

#: The last commit of the SQLite release.
OLD_RELEASE = "6c5e996"
TABLES = ("users", "tokens", "repos", "grants", "flags", "pushlog")


def old_tree(target: Path) -> Path:
    """The SQLite release's files, from this checkout's git history; skips the test without it."""
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip(f"{PROJECT_ROOT} is not a git checkout: the SQLite release ({OLD_RELEASE}) is out of reach")
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", OLD_RELEASE],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"git history lacks the SQLite release {OLD_RELEASE} (a shallow clone?): "
                    f"{archive.stderr.decode(errors='replace').strip()}")
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="tar")
    return target


@dataclass
class OldRelease:
    """The SQLite release, run from its own tree on ``data``: ``python -m hostd...`` with it first on the path."""

    tree: Path
    env: dict[str, str]
    settings: Settings  # this release's reading of the same variables: ports, URLs

    def run(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", *args], cwd=self.tree, env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"old release: {' '.join(args)} exited {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def hostd(self, *args: str, stdin: str | None = None) -> str:
        return self.run("hostd.cli", *args, "--data", str(self.settings.data_dir), stdin=stdin)


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldRelease]:
    root = tmp_path_factory.mktemp("upgrade")
    pg.reachable(root)  # the new stack's PostgreSQL runs as another user when the tests run as root
    tree = old_tree(root / "old-release")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("HOSTD_", "PG"))}
    env.update({f"HOSTD_{name}_PORT": str(port)
                for name, port in zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True)})
    env.update(HOSTD_DATA=str(root / "var"), HOSTD_WORKERS="2", HOSTD_THREADS="4", PYTHONPATH=str(tree))
    yield OldRelease(tree, env, Settings.from_env(env))


@dataclass
class Made:
    """What was made through the old release, to find again in the new one."""

    passwords: dict[str, str]
    tokens: dict[str, tuple[str, str]]  # token id -> (owner, secret)
    revoked: str
    log: str  # ``hostd log alice/notes`` as the old release printed it
    rows: dict[str, list[tuple[Any, ...]]]  # every row of the SQLite file


def make_an_installation(old: OldRelease, clients: Clients, work: Path) -> Made:
    passwords = {"alice": "alice-old-password", "bob": "bob-old-password", "carol": "carol-old-password"}
    for user, password in passwords.items():
        old.hostd("user", "add", user, stdin=password + "\n")
    old.hostd("repo", "create", "alice/notes", "--vcs", "git")
    old.hostd("repo", "create", "alice/wiki", "--vcs", "hg")
    old.hostd("repo", "create", "bob/site", "--vcs", "git", "--public")
    old.hostd("grant", "bob", "alice/notes", "write")
    old.hostd("grant", "carol", "alice/wiki", "read")
    tokens = {}
    for user, scope in (("alice", "read"), ("bob", "write"), ("alice", "write")):
        first, secret = old.hostd("token", "create", user, "--scope", scope, "--expires-days", "30").splitlines()
        tokens[first.split()[1]] = (user, secret)
    revoked = list(tokens)[-1]
    old.hostd("token", "revoke", revoked)
    old.hostd("flag", "set", "read_only", "off")

    url = Stack(old.settings, clients).url
    git, hg = clients.git, clients.hg
    git("clone", "-q", url("alice/notes.git", "bob", passwords["bob"]), str(work / "notes"))
    for n in range(3):  # three pushes by bob, who has write access: a branch made, moved, and a tag
        (work / "notes" / "file.txt").write_text(f"version {n}\n")
        git("add", ".", cwd=work / "notes")
        git("commit", "-q", "-m", f"version {n}", cwd=work / "notes")
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work / "notes")
    git("tag", "v1", cwd=work / "notes")
    git("push", "-q", "origin", "v1", cwd=work / "notes")
    wiki = url("alice/wiki", "alice", passwords["alice"])
    hg("clone", "-q", wiki, str(work / "wiki"))
    (work / "wiki" / "page.txt").write_text("a page\n")
    hg("commit", "-q", "-A", "-m", "a page", cwd=work / "wiki")
    hg("push", "-q", wiki, cwd=work / "wiki")  # hg keeps no password with the clone
    log = old.hostd("log", "alice/notes")
    assert len(log.splitlines()) == 4, log
    return Made(passwords, tokens, revoked, log, {})


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def postgres_rows(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row in the release's columns, booleans as the 0/1 SQLite stored."""
    with psycopg.connect(settings.database) as conn:
        return {t: sorted((tuple(int(v) if isinstance(v, bool) else v for v in row)
                           for row in pg.rows_as_released(conn, t)), key=repr) for t in TABLES}


def refs(repo: str) -> str:
    return f"{repo}.git/info/refs?service=git-upload-pack"


def test_everything_made_by_the_sqlite_release_survives_the_upgrade(old_release: OldRelease, tmp_path: Path) -> None:
    old = old_release
    data = old.settings.data_dir
    clients = Clients(data.parent / "home", old.settings.tls_dir / "ca.pem")
    old.run("hostd.ops.stack", "up")
    try:
        assert (data / "hostd.db").is_file() and not old.settings.postgres_dir.exists()  # it is the old code
        made = make_an_installation(old, clients, tmp_path)
    finally:
        old.run("hostd.ops.stack", "down")
    made.rows = sqlite_rows(data / "hostd.db")
    counts = {t: len(r) for t, r in made.rows.items()}
    # The old release made its demo user and two demo repositories too; hg logs one entry per moved head.
    assert counts == {"users": 4, "tokens": 3, "repos": 5, "grants": 2, "flags": 1, "pushlog": counts["pushlog"]}
    assert counts["pushlog"] >= 5

    stack = start_stack(data.parent)  # this release, on the same data directory
    try:
        check_the_upgraded_installation(stack, made, tmp_path)
    finally:
        stop_stack(stack)


def check_the_upgraded_installation(stack: Stack, made: Made, work: Path) -> None:
    data = stack.settings.data_dir
    # The file was imported, then set aside: kept, private, and never imported again.
    assert not (data / "hostd.db").exists()
    [backup] = [p for p in data.iterdir()
                if p.name.startswith("hostd.db.imported-") and not p.name.endswith(("-wal", "-shm"))]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert sqlite_rows(backup) == made.rows
    # Every row, as it was.
    assert postgres_rows(stack.settings) == made.rows

    # The old passwords log in; grants decide as before.
    alice, bob, carol = ((user, made.passwords[user]) for user in ("alice", "bob", "carol"))
    assert stack.request(refs("alice/notes"), alice)[0] == 200
    assert stack.request(refs("alice/notes"), bob)[0] == 200
    assert stack.request(refs("alice/notes"), carol)[0] == 404  # a private repository she may not see
    assert stack.request(refs("alice/notes"), ("alice", "not-the-password"))[0] == 401
    assert stack.request(refs("bob/site"))[0] == 200  # public
    # Tokens work, the revoked one does not.
    for token_id, (owner, secret) in made.tokens.items():
        expected = 401 if token_id == made.revoked else 200
        assert stack.request(refs("alice/notes"), (owner, secret))[0] == expected, token_id

    # The push log reads the same, and new pushes are logged after the old ones.
    assert stack.hostd("log", "alice/notes").stdout == made.log
    git = stack.clients.git
    git("clone", "-q", stack.url("alice/notes.git", *bob), str(work / "notes-again"))
    assert (work / "notes-again" / "file.txt").read_text() == "version 2\n"
    (work / "notes-again" / "file.txt").write_text("after the upgrade\n")
    git("commit", "-q", "-am", "after the upgrade", cwd=work / "notes-again")
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work / "notes-again")
    log = stack.hostd("log", "alice/notes").stdout.splitlines()
    assert log[1:] == made.log.splitlines() and "\tbob\trefs/heads/main\t" in log[0]
    stack.clients.hg("clone", "-q", stack.url("alice/wiki", *carol), str(work / "wiki-again"))
    assert (work / "wiki-again" / "page.txt").read_text() == "a page\n"
