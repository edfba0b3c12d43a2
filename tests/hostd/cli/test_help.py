"""What ``hostd`` says about itself: help alone, ``--version``, help and an example for everything."""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import subprocess
import sys

import pytest

from hostd.cli.main import build_parser, main
from tests.hostd.cli.conftest import leaf_commands, parsers

ALL = list(parsers(build_parser()))


def test_hostd_alone_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == build_parser().format_help() and err == ""
    assert "usage: hostd " in out and "Exit status: 0 done" in out


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"hostd {importlib.metadata.version('hostd')}\n"


def test_python_dash_m_is_the_same_command() -> None:
    done = subprocess.run([sys.executable, "-m", "hostd.cli", "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"hostd {importlib.metadata.version('hostd')}\n")
    done = subprocess.run([sys.executable, "-m", "hostd.cli"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and done.stdout.startswith("usage: hostd ")


@pytest.mark.parametrize("parser", ALL, ids=[p.prog for p in ALL])
def test_every_argument_has_help(parser: argparse.ArgumentParser) -> None:
    missing = [a.dest for a in parser._actions if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


@pytest.mark.parametrize("parser", ALL, ids=[p.prog for p in ALL])
def test_every_help_shows_examples_that_parse(parser: argparse.ArgumentParser) -> None:
    epilog = parser.epilog or ""
    assert epilog.startswith("example")
    examples = [line.strip() for line in epilog.splitlines()[1:]]
    assert examples
    for example in examples:
        assert example.startswith(parser.prog)  # an example of this command, not another
        if "COMMAND" not in example:  # the top level's "hostd COMMAND --help" is a placeholder
            assert callable(build_parser().parse_args(shlex.split(example)[1:]).func)


@pytest.mark.parametrize("command", sorted(leaf_commands(build_parser())), ids=" ".join)
def test_each_command_help_exits_0(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hostd {' '.join(command)} ") and "--data DIR" in out and "example" in out
