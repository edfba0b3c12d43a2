"""What an SSH client asked for: ``SSH_ORIGINAL_COMMAND`` parsed, never run.

sshd gives every session hostd's forced command, and the command the client
sent arrives as ``SSH_ORIGINAL_COMMAND``. It is the classic attack surface
of git hosting (a shell that sees ``git-upload-pack 'x'; rm -rf ~``), so
nothing here ever reaches a shell or an ``exec`` as a string: the text is
parsed into one of three known commands and a repository name, and
everything else is refused with one line saying what is accepted.

Accepted, exactly (what git, libgit2, JGit and Mercurial send)::

    git-upload-pack 'OWNER/NAME.git'      clone, fetch (also "/OWNER/NAME", unquoted, or "git upload-pack")
    git-receive-pack 'OWNER/NAME.git'     push
    hg -R OWNER/NAME serve --stdio        everything hg does (also quoted, or with a leading "/")

The words are split on single spaces and unquoted the way git quotes them
(``sq_quote_buf``: single quotes, ``'\\''`` for a quote, ``'\\!'`` for a
bang; Mercurial's ``shellquote`` is a subset); any other shell syntax
(double quotes, ``$``, ``;``, ``|``, backticks, newlines, globbing, a
backslash outside that escape) is refused before it is looked at. The path
must then be a repository name of :mod:`hostd.names`: two segments of
``[a-z0-9._-]`` (any case), the ``.git`` suffix for git only, nothing that
could traverse (``..``, ``~``, a third segment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hostd.names import RepoName, parse_repo_path
from singlemalt import Action

#: Longest command accepted: a path of two 100-character names, quoted, is far below.
MAX_COMMAND: Final = 1024
#: What a refused command is told (one line on stderr).
USAGE: Final = ("hostd accepts only git-upload-pack, git-receive-pack and "
                "'hg -R OWNER/NAME serve --stdio' over SSH")
_GIT_SERVICES: Final = {
    "git-upload-pack": Action.READ,
    "git-receive-pack": Action.WRITE,
}
# Characters that need no quoting: what a repository path is made of.
_PLAIN: Final = re.compile(r"[A-Za-z0-9._/+-]")


class Refused(ValueError):
    """The command is not one hostd serves; ``str()`` is the line for the client."""


@dataclass(frozen=True, slots=True)
class SshCommand:
    """A parsed command: ``service`` is ``git-upload-pack``, ``git-receive-pack`` or ``hg-serve``.

    ``path`` is the repository path as the client wrote it, without leading
    slashes (what singlemalt's :class:`~singlemalt.Target` calls the
    repository); ``repo`` its canonical name. An hg session is a read when
    it opens: each of its pushes is asked about again as it happens.
    """

    service: str
    path: str
    repo: RepoName
    action: Action

    @property
    def vcs(self) -> str:
        return "hg" if self.service == "hg-serve" else "git"


def parse(text: str | None) -> SshCommand:
    """Parse ``SSH_ORIGINAL_COMMAND``; raise :class:`Refused` for anything hostd does not serve."""
    if not text:
        raise Refused("you are authenticated, but there is no shell access; " + USAGE)
    if len(text) > MAX_COMMAND:
        raise Refused("command too long; " + USAGE)
    words = _split(text)
    if len(words) == 3 and words[0] == "git" and f"git-{words[1]}" in _GIT_SERVICES:
        words = [f"git-{words[1]}", words[2]]
    if len(words) == 2 and words[0] in _GIT_SERVICES:
        return _command(words[0], words[1], _GIT_SERVICES[words[0]], git=True)
    if len(words) == 5 and words[0] == "hg" and words[1] == "-R" and words[3:] == ["serve", "--stdio"]:
        return _command("hg-serve", words[2], Action.READ, git=False)
    raise Refused(USAGE)


def _command(service: str, raw: str, action: Action, *, git: bool) -> SshCommand:
    path = raw.lstrip("/")
    parsed = parse_repo_path(path) if path and "//" not in path and path.count("/") <= 2 else None
    if parsed is None or (parsed[1] and not git):
        raise Refused(f"not a repository path: {_printable(raw)!r}; expected OWNER/NAME")
    return SshCommand(service, path.rstrip("/"), parsed[0], action)


def _split(text: str) -> list[str]:
    """Words separated by single spaces, unquoted as ``sq_quote_buf`` quotes; anything else refused."""
    words: list[str] = []
    word: list[str] | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == " ":
            if word is None:
                raise Refused(USAGE)  # two spaces, or a leading one
            words.append("".join(word))
            word = None
            i += 1
            continue
        word = [] if word is None else word
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise Refused("unbalanced quote; " + USAGE)
            word.append(text[i + 1:end])
            i = end + 1
        elif char == "\\" and i + 1 < len(text) and text[i + 1] in "'!":
            word.append(text[i + 1])
            i += 2
        elif _PLAIN.match(char):
            word.append(char)
            i += 1
        else:
            raise Refused(f"unexpected {_printable(char)!r}; " + USAGE)
    if word is None:
        raise Refused(USAGE)  # empty, or a trailing space
    words.append("".join(word))
    return words


def _printable(text: str) -> str:
    """``text`` with control characters replaced, safe to echo on the client's terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)[:120]
