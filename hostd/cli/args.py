"""The pieces every ``hostd`` command's parser is built from.

One parser class (whose errors become :class:`~hostd.cli.errors.UsageError`,
so :mod:`hostd.cli.main` prints them like any other error), one ``--data``
option, one way to declare a command (help, example, ``--data``) or a group
of them, and the argument types shared by several commands::

    group = add_group(top, "repo", "manage repositories", "hostd repo list")
    p = add_command(group, "delete", cmd_repo_delete, "delete a repository",
                    "hostd repo delete alice/notes")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")

``--data`` is accepted before the command, between a group and its action,
and after the action; each position stores under its own name
(:data:`DATA_DESTS`), because argparse lets a sub-command's values overwrite
its parent's. :func:`data_dir` then sees every one given, and refuses two
different directories instead of guessing which installation was meant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

from hostd.cli.errors import UsageError
from hostd.names import RepoName, parse_repo_name

#: Where each ``--data`` is stored: before the command, after a group's name, after the command.
DATA_DESTS = ("data_before", "data_group", "data")

Command: TypeAlias = Callable[[argparse.Namespace], None]


class HostdParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises its errors instead of exiting, so the
    exit-code table in :mod:`hostd.cli.main` is the one place that exits."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


SubParsers: TypeAlias = "argparse._SubParsersAction[HostdParser]"


def new_parser(prog: str, description: str, examples: tuple[str, ...]) -> HostdParser:
    """The top-level parser: the same formatting and ``--data`` as every command."""
    parser = HostdParser(prog=prog, description=description, epilog=_epilog(examples),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_option(parser, "data_before")
    return parser


def add_command(sub: SubParsers, name: str, func: Command, help: str, *examples: str) -> HostdParser:
    """Declare the command ``name`` run by ``func``, with its help and at least one example."""
    parser = sub.add_parser(name, help=help, description=_sentence(help), epilog=_epilog(examples),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_option(parser, "data")
    parser.set_defaults(func=func)
    return parser


def add_group(top: SubParsers, name: str, help: str, *examples: str) -> SubParsers:
    """Declare a group of commands (``hostd repo ...``); returns where to add them."""
    parser = top.add_parser(name, help=help, description=_sentence(help), epilog=_epilog(examples),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_option(parser, "data_group")
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True, title="actions",
                                 help=f"what to do (hostd {name} ACTION --help for each)")


def data_dir(args: argparse.Namespace) -> Path | None:
    """The data directory named by ``--data`` wherever it was given, or None.

    Two different ones are a usage error: with two installations on a host,
    acting on either would be a guess.
    """
    given: list[Path] = []
    for dest in DATA_DESTS:
        if hasattr(args, dest):
            path = Path(getattr(args, dest)).resolve()
            if path not in given:
                given.append(path)
    if len(given) > 1:
        raise UsageError("--data given twice with different directories: " + " and ".join(map(str, given)))
    return given[0] if given else None


def repo_name(text: str) -> RepoName:
    """``OWNER/NAME`` as :mod:`hostd.names` defines it."""
    ref = parse_repo_name(text)
    if ref is None:
        raise argparse.ArgumentTypeError(
            f"invalid repository name {text!r}: expected OWNER/NAME, letters, digits, '.', '_', '-'"
        )
    return ref


def positive_int(text: str) -> int:
    """A whole number above zero (counts, limits, days)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def positive_float(text: str) -> float:
    """A finite number of seconds or minutes above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _add_data_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--data", dest=dest, metavar="DIR", default=argparse.SUPPRESS,
                        help="the installation's data directory, before or after the command "
                             "(default: $HOSTD_DATA, else var/ in the checkout)")


def _epilog(examples: tuple[str, ...]) -> str:
    if not examples:
        raise ValueError("every hostd command shows at least one example")
    return "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)


def _sentence(help: str) -> str:
    return help[:1].upper() + help[1:] + "."
