"""Which installation a command acts on: ``--data`` anywhere, ``$HOSTD_DATA``, and none at all.

Two installations side by side: a command must change the one it was given
and leave the other alone, wherever ``--data`` stands on the command line.
A directory that is not an installation is refused in one line by every
command but ``init``, and nothing is created in it or for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hostd.cli.main import build_parser, main
from hostd.ops import postgres
from hostd.settings import Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from tests import pg
from tests.hostd.cli.conftest import DATABASES, leaf_commands, run

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def two(install: Callable[[str], Path], capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Installation ``a`` with user alice and repository alice/notes; ``b`` empty."""
    a, b = install("a"), install("b")
    assert run(capsys, monkeypatch, ["user", "add", "alice", "--data", str(a)], "s3cret-password\n")[0] == 0
    assert run(capsys, monkeypatch, ["repo", "create", "alice/notes", "--vcs", "git", "--data", str(a)])[0] == 0
    return a, b


def users(data: Path) -> list[str]:
    db = Database(DATABASES[data.resolve()])
    try:
        return Accounts(db).users()
    finally:
        db.close()


PLACES: dict[str, Callable[[str, list[str]], list[str]]] = {
    "before": lambda d, cmd: ["--data", d, *cmd],
    "after": lambda d, cmd: [*cmd, "--data", d],
    "between": lambda d, cmd: [cmd[0], "--data", d, *cmd[1:]],
}


@pytest.mark.parametrize("place", PLACES)
def test_data_anywhere_names_the_installation_read(place: str, two: tuple[Path, Path], capsys: Capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two
    argv = PLACES[place]
    assert run(capsys, monkeypatch, argv(str(a), ["repo", "list"])) == (0, "alice/notes\tgit\tprivate\tdefault\n", "")
    assert run(capsys, monkeypatch, argv(str(b), ["repo", "list"])) == (0, "", "")


@pytest.mark.parametrize("place", PLACES)
def test_data_anywhere_names_the_installation_written(place: str, two: tuple[Path, Path], capsys: Capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two
    code, out, _ = run(capsys, monkeypatch, PLACES[place](str(b), ["user", "add", "bob"]), "another-password\n")
    assert (code, out) == (0, "user bob created\n")
    assert (users(a), users(b)) == (["alice"], ["bob"])


def test_hostd_data_is_the_default_and_data_overrides_it(two: tuple[Path, Path], capsys: Capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two
    monkeypatch.setenv("HOSTD_DATA", str(a))
    assert run(capsys, monkeypatch, ["repo", "list"])[1] == "alice/notes\tgit\tprivate\tdefault\n"
    assert run(capsys, monkeypatch, ["--data", str(b), "repo", "list"])[1] == ""


def test_two_different_data_directories_are_refused(two: tuple[Path, Path], capsys: Capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two
    code, out, err = run(capsys, monkeypatch, ["--data", str(a), "user", "add", "bob", "--data", str(b)],
                         "another-password\n")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"hostd: --data given twice with different directories: {a} and {b}"
    assert (users(a), users(b)) == (["alice"], [])


def test_the_same_directory_twice_is_one(two: tuple[Path, Path], capsys: Capsys,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = two
    monkeypatch.chdir(a.parent)
    code, out, _ = run(capsys, monkeypatch, ["--data", str(a), "repo", "list", "--data", "a/../a"])
    assert (code, out) == (0, "alice/notes\tgit\tprivate\tdefault\n")


# One command line per command but init, valid but for the missing installation.
COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("user", "add"): ["user", "add", "alice"],
    ("user", "passwd"): ["user", "passwd", "alice"],
    ("user", "del"): ["user", "del", "alice"],
    ("grant",): ["grant", "bob", "alice/notes", "write"],
    ("revoke",): ["revoke", "bob", "alice/notes"],
    ("token", "create"): ["token", "create", "alice", "--scope", "read"],
    ("token", "list"): ["token", "list", "alice"],
    ("token", "revoke"): ["token", "revoke", "abc123"],
    ("repo", "create"): ["repo", "create", "alice/notes", "--vcs", "hg"],
    ("repo", "delete"): ["repo", "delete", "alice/notes"],
    ("repo", "list"): ["repo", "list"],
    ("repo", "move"): ["repo", "move", "alice/notes", "s2"],
    ("maintain",): ["maintain"],
    ("log",): ["log", "alice/notes"],
    ("flag", "set"): ["flag", "set", "read_only", "on"],
    ("flag", "list"): ["flag", "list"],
    ("pool", "list"): ["pool", "list"],
    ("pool", "drain"): ["pool", "drain", "git", "git1"],
    ("pool", "ready"): ["pool", "ready", "git", "git1"],
    ("pool", "add"): ["pool", "add", "git", "git2", "127.0.0.1:8111"],
    ("pool", "remove"): ["pool", "remove", "git", "git2"],
    ("traffic",): ["traffic", "--png", "PNG", "--minutes", "0.1"],
    ("reap",): ["reap"],
    ("trust",): ["trust"],
    ("key", "add"): ["key", "add", "alice"],
    ("key", "list"): ["key", "list", "alice"],
    ("key", "del"): ["key", "del", "7"],
    ("hook", "add"): ["hook", "add", "alice/notes", "https://ci.example.com/hook"],
    ("hook", "list"): ["hook", "list", "alice/notes"],
    ("hook", "del"): ["hook", "del", "3"],
    ("hook", "enable"): ["hook", "enable", "3"],
    ("hook", "deliveries"): ["hook", "deliveries", "3"],
    ("hook", "redeliver"): ["hook", "redeliver", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"],
    ("queue", "status"): ["queue", "status"],
    ("shard", "list"): ["shard", "list"],
    ("shard", "add"): ["shard", "add", "s2"],
    ("shard", "drain"): ["shard", "drain", "s2"],
    ("shard", "undrain"): ["shard", "undrain", "s2"],
    ("shard", "weight"): ["shard", "weight", "s2", "2"],
    ("shard", "servers"): ["shard", "servers", "s2", "--git", "127.0.0.1:8111"],
    ("routes", "sync"): ["routes", "sync", "--files-only"],
    ("routes", "follow"): ["routes", "follow"],
    ("routes", "show"): ["routes", "show"],
    ("db", "upgrade"): ["db", "upgrade"],
    ("db", "current"): ["db", "current"],
    ("db", "backup"): ["db", "backup", "hostd.dump"],
    ("db", "restore"): ["db", "restore", "hostd.dump", "--yes"],
}


def test_every_command_but_init_is_in_the_table() -> None:
    assert set(leaf_commands(build_parser())) == {*COMMANDS, ("init",)}


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
@pytest.mark.parametrize("missing", ["directory", "secret"])
def test_no_installation_is_one_line_exit_1_and_creates_nothing(
        command: tuple[str, ...], missing: str, tmp_path: Path, capsys: Capsys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "srv" / "hostd-typo"
    if missing == "secret":  # a directory, just not an installation (say, the operator's home)
        data.mkdir(parents=True)
        (data / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    argv = [tmp_path / "out.png" if word == "PNG" else word for word in COMMANDS[command]]
    before = tree(tmp_path)
    code, out, err = run(capsys, monkeypatch, [*map(str, argv), "--data", str(data)], "s3cret-password\n")
    lacking = data if missing == "directory" else data / "secret"
    assert (code, out) == (1, "")
    assert err == (f"hostd: no hostd installation at {data} ({lacking} does not exist); "
                   f"create one with: hostd init --data {data}\n")
    assert tree(tmp_path) == before


def test_init_is_the_command_that_creates_one(tmp_path: Path, capsys: Capsys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With no HOSTD_DATABASE_URL, init creates the installation's own PostgreSQL cluster in it."""
    monkeypatch.delenv("HOSTD_DATABASE_URL", raising=False)
    data = tmp_path / "new"
    pg.reachable(tmp_path)
    assert main(["repo", "list", "--data", str(data)]) == 1
    assert main(["init", "--no-demo", "--data", str(data)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"data directory ready: {data}"
    assert (data / "secret").is_file() and (data / "postgres" / "PG_VERSION").is_file()
    # Nobody but hostd's own user (and, run as root, PostgreSQL's, to reach its cluster) gets in.
    assert oct(os.stat(data).st_mode & 0o777) == ("0o710" if os.geteuid() == 0 else "0o700")
    with postgres.temporary_server(Settings.from_env({"HOSTD_DATA": str(data)})):
        assert main(["repo", "list", "--data", str(data)]) == 0
