"""The clone box's commands: what a visitor copies to clone a repository.

:func:`clone_box` is the one place the pages get them from. Its URLs are
those of hostd's printed clone commands (:mod:`hostd.settings.clone`:
``https://HOST/OWNER/NAME.git`` for git, without ``.git`` for hg;
``ssh://git@HOST:PORT/...`` and ``ssh://hg@HOST:PORT/...``). The composition root passes
``functools.partial(clone_box, base_url=..., ssh_origin=..., trust=...)``
to :class:`~hostd.web.repo.pages.RepositoryPages`, so the trust hint of
``hostd trust`` (a command to run once, or per-clone options) can be wired
in without the pages knowing how it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostd.settings.clone import clone_command, https_url, ssh_url
from hostd.store.accounts import Repo


@dataclass(frozen=True, slots=True)
class CloneBox:
    """The commands a repository page offers. ``trust`` is what to run first, if anything."""

    https: str
    ssh: str | None
    trust: str | None = None


def clone_url(repo: Repo, base_url: str) -> str:
    """The repository's HTTPS URL, as the git and hg pools answer it."""
    return https_url(base_url, str(repo.ref), repo.vcs)


def clone_box(repo: Repo, *, base_url: str, ssh_origin: str | None = None, trust: str | None = None) -> CloneBox:
    """``git clone URL`` / ``hg clone URL`` over HTTPS and, with ``ssh_origin`` (``HOST:PORT``), over SSH."""
    ssh = None if ssh_origin is None else clone_command(repo.vcs, ssh_url(ssh_origin, str(repo.ref), repo.vcs))
    return CloneBox(clone_command(repo.vcs, clone_url(repo, base_url)), ssh, trust)
