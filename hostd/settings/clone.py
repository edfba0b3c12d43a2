"""What a user types to clone a repository, so the printed commands and the web's clone box say the same.

Pure: the settings, a repository's name and kind in, text out. It lives with the settings (a leaf)
because the URLs are derived from them (:attr:`~hostd.settings.Settings.base_url`, the SSH port) and
because both floors that show clone commands may import it: ``make run``'s announcement
(:mod:`hostd.ops.bootstrap`) and the web pool, which may not import :mod:`hostd.ops`.

Whether a user must first trust the stack's certificate is not decided here: ``make run`` asks
:mod:`hostd.ops.trust` what this machine trusts; the web knows only what it serves. Either passes the
command to run once, and :attr:`CloneHelp.trust` says it in the one sentence both show::

    help = clone_help(settings, "demo/hello", "git", trust_command=".venv/bin/hostd trust --install")
    help.trust   # "First, trust this stack's certificate (once): .venv/bin/hostd trust --install"
    help.https   # "git clone https://127.0.0.1:8443/demo/hello.git"
    help.ssh     # "git clone ssh://git@127.0.0.1:2222/demo/hello.git"
"""

from __future__ import annotations

from dataclasses import dataclass

from hostd.settings import Settings

#: The repository kinds and the client that clones each.
CLIENTS = {"git": "git", "hg": "hg"}


@dataclass(frozen=True, slots=True)
class CloneHelp:
    """One repository's clone commands, and the step to take once before them (None: nothing)."""

    https: str
    ssh: str
    trust: str | None = None


def trust_step(command: str) -> str:
    """The sentence that comes before the clone commands while the certificate is not trusted yet."""
    return f"First, trust this stack's certificate (once): {command}"


def clone_help(settings: Settings, repo: str, vcs: str, *, trust_command: str | None = None) -> CloneHelp:
    """The HTTPS and SSH clone commands of ``repo`` (``OWNER/NAME``, already a valid name) of kind ``vcs``.

    Plain ``git clone URL`` and ``hg clone URL``: a command that carries its own CA option would
    leave a clone whose later pulls and pushes fail wherever that option is not saved (hg saves
    none) or is overridden (``GIT_SSL_CAINFO`` replaces git's ``http.sslCAInfo``).
    """
    return CloneHelp(
        https=clone_command(vcs, https_url(settings.base_url, repo, vcs)),
        ssh=clone_command(vcs, ssh_url(ssh_origin(settings), repo, vcs)),
        trust=None if trust_command is None else trust_step(trust_command),
    )


def clone_command(vcs: str, url: str) -> str:
    """``git clone URL`` or ``hg clone URL``; ValueError for another kind."""
    client = CLIENTS.get(vcs)
    if client is None:
        raise ValueError(f"{vcs!r} is not one of {', '.join(CLIENTS)}")
    return f"{client} clone {url}"


def https_url(base_url: str, repo: str, vcs: str) -> str:
    """``https://HOST/OWNER/NAME.git`` for git, without ``.git`` for hg: as the pools answer them."""
    return f"{base_url}/{repo}{'.git' if vcs == 'git' else ''}"


def ssh_origin(settings: Settings) -> str:
    """``HOST:PORT`` of the installation's sshd, an IPv6 host in brackets."""
    host = f"[{settings.public_host}]" if ":" in settings.public_host else settings.public_host
    return f"{host}:{settings.ports.ssh}"


def ssh_url(origin: str, repo: str, vcs: str) -> str:
    """``ssh://git@HOST:PORT/OWNER/NAME.git`` or ``ssh://hg@HOST:PORT/OWNER/NAME``."""
    return f"ssh://{vcs}@{origin}/{repo}{'.git' if vcs == 'git' else ''}"
