"""The steps of ``hostd trust --install`` and ``--remove``, as values that print and then run.

A :class:`~hostd.ops.trust.Plan` holds tuples of them: ``hostd trust`` prints each one's
:meth:`lines` (how to do it by hand), ``--install`` and ``--remove`` hand them to :func:`apply`,
in order, which stops at the first that fails. Every step can be taken twice: a file is
replaced whole, a block is added to ``~/.hgrc`` only if it is not there, git's value is
replaced, and what is taken out may already be gone.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias


class TrustError(Exception):
    """A step failed, or no step can help; the message says which, in one line."""


@dataclass(frozen=True, slots=True)
class Places:
    """Where trust is put. The defaults are Debian's; the tests give temporary ones."""

    #: Whose ``~/.gitconfig`` and ``~/.hgrc`` (git runs with this ``HOME``).
    home: Path
    #: Certificates an administrator adds, which update-ca-certificates puts in the system bundle.
    system_certs: Path = Path("/usr/local/share/ca-certificates")
    #: The bundle git, curl and Python read (and ``GIT_SSL_CAINFO`` often names).
    system_bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt")
    #: Mercurial's system-wide configuration files (read by Debian's hg and pip's alike).
    hg_system: Path = Path("/etc/mercurial/hgrc.d")
    #: What rebuilds the system bundle from :attr:`system_certs`.
    update: tuple[str, ...] = ("update-ca-certificates",)

    @classmethod
    def default(cls) -> Places:
        """This user's home and the system's places."""
        return cls(home=Path.home())


def _q(path: Path) -> str:
    return shlex.quote(str(path))


@dataclass(frozen=True, slots=True)
class Copy:
    """Install ``source`` at ``target``, readable by all (a certificate), making its directory."""

    source: Path
    target: Path

    def lines(self) -> tuple[str, ...]:
        return (f"install -D -m 0644 {_q(self.source)} {_q(self.target)}",)


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``text`` to ``target``, readable by all, making its directory."""

    target: Path
    text: str

    def lines(self) -> tuple[str, ...]:
        return (f"write {self.target}:", *(f"  {line}" for line in self.text.splitlines()))


@dataclass(frozen=True, slots=True)
class Delete:
    """Take out a file or a directory of ours, if it is there, then the directories ``then_empty`` that are empty."""

    target: Path
    then_empty: tuple[Path, ...] = ()

    def lines(self) -> tuple[str, ...]:
        prune = f"; rmdir --ignore-fail-on-non-empty {' '.join(map(_q, self.then_empty))}" if self.then_empty else ""
        return (f"rm -rf {_q(self.target)}{prune}",)


@dataclass(frozen=True, slots=True)
class Run:
    """Run a program; an exit status outside ``ok`` fails the step."""

    argv: tuple[str, ...]
    ok: tuple[int, ...] = (0,)

    def lines(self) -> tuple[str, ...]:
        return (shlex.join(self.argv),)


@dataclass(frozen=True, slots=True)
class HgBlock:
    """Add ``block`` to the end of an hgrc unless it is there (hg takes the last value), or take it out."""

    hgrc: Path
    block: str
    add: bool

    def lines(self) -> tuple[str, ...]:
        verb = "append to" if self.add else "take out of"
        return (f"{verb} {self.hgrc}:", *(f"  {line}" for line in self.block.splitlines()))


Action: TypeAlias = Copy | Write | Delete | Run | HgBlock


def git_env(places: Places) -> dict[str, str]:
    """The environment git runs with: ``git config --global`` writes ``places.home``'s ``.gitconfig``."""
    return dict(os.environ, HOME=str(places.home))


def apply(actions: tuple[Action, ...], places: Places) -> None:
    """Take each step in order; TrustError at the first that fails."""
    for action in actions:
        try:
            _take(action, places)
        except OSError as error:
            raise TrustError(f"{action.lines()[0]}: {error.strerror or error}") from None


def _take(action: Action, places: Places) -> None:
    if isinstance(action, Copy):
        _put(action.target, action.source.read_bytes())
    elif isinstance(action, Write):
        _put(action.target, action.text.encode())
    elif isinstance(action, Delete):
        if action.target.is_dir() and not action.target.is_symlink():
            shutil.rmtree(action.target)
        else:
            action.target.unlink(missing_ok=True)
        for directory in action.then_empty:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    elif isinstance(action, HgBlock):
        _edit_hgrc(action)
    else:
        _run(action, places)


def _put(target: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``target`` whole: a reader sees the old file or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.name}.tmp"
    staged.write_bytes(data)
    staged.chmod(mode)
    staged.replace(target)


def _edit_hgrc(action: HgBlock) -> None:
    try:
        text = action.hgrc.read_text()
        mode = action.hgrc.stat().st_mode & 0o777  # an hgrc may hold [auth] passwords: keep its mode
    except FileNotFoundError:
        text, mode = "", 0o644
    if action.add:
        if action.block in text:
            return
        new = text + ("\n" if text and not text.endswith("\n") else "") + action.block
    else:
        if action.block not in text:
            return
        new = text.replace(action.block, "")
    _put(action.hgrc, new.encode(), mode)


def _run(action: Run, places: Places) -> None:
    program = shutil.which(action.argv[0]) or shutil.which(action.argv[0], path="/usr/sbin:/sbin")
    if program is None:
        raise TrustError(f"{action.argv[0]} is not installed")
    done = subprocess.run([program, *action.argv[1:]], env=git_env(places), capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode not in action.ok:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise TrustError(f"{shlex.join(action.argv)} exited {done.returncode}" + (f": {said[-1]}" if said else ""))
