"""Installations for the CLI tests, and a runner that calls ``hostd`` in-process."""

from __future__ import annotations

import argparse
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from hostd.cli.main import main
from tests import pg


class Hostd(Protocol):
    """``hostd ARGS... --data <the test's installation>``: (exit status, stdout, stderr)."""

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]: ...


#: The database of each installation the tests made, by its data directory. An
#: installation's database is configuration (``HOSTD_DATABASE_URL``), as an
#: operator's environment would give it: :func:`run` sets it for the
#: installation a command line names.
DATABASES: dict[Path, str] = {}


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``hostd init --no-demo`` per session: making its CA and certificate takes a while."""
    data = tmp_path_factory.mktemp("template") / "var"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOSTD_DATABASE_URL", pg.new_database(migrated=False))
        assert main(["init", "--no-demo", "--data", str(data)]) == 0
    return data


@pytest.fixture
def install(template: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Makes a fresh installation at ``tmp_path / name``: a copy of the template, with a database of its own."""
    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(template, target)
        DATABASES[target.resolve()] = pg.new_database()
        return target
    return make


@pytest.fixture
def data(install: Callable[[str], Path]) -> Path:
    """This test's own installation."""
    return install("var")


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """``main(argv)`` with ``stdin``; its exit status and what it printed."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    named = [Path(argv[i + 1]) for i, word in enumerate(argv[:-1]) if word == "--data"]
    chosen = named[-1] if named else Path(os.environ.get("HOSTD_DATA", "."))
    database = DATABASES.get(chosen.resolve())
    if database is None:
        monkeypatch.delenv("HOSTD_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("HOSTD_DATABASE_URL", database)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def hostd(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: Path) -> Hostd:
    def call(*args: str, stdin: str = "") -> tuple[int, str, str]:
        return run(capsys, monkeypatch, [*args, "--data", str(data)], stdin)
    return call


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command of the parser, as the words that name it."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaf_commands(sub, (*path, name))


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every group's and command's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)
