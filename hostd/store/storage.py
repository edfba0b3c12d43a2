"""Where repositories live on disk, and creating and deleting them.

Layout: ``<root>/OWNER/NAME.git`` (bare git) and ``<root>/OWNER/NAME`` (hg).
Every path is built from a validated :class:`~hostd.names.RepoName` and its
two components below the root must not be symlinks, so neither a bad name
nor a symlink planted in the tree can point a pool at another directory.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo as GitRepo

from hostd.names import RepoName

log = logging.getLogger(__name__)


class StorageError(Exception):
    """A repository path that is not where it must be."""


class Storage:
    """The repository root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, ref: RepoName, vcs: str) -> Path:
        """The directory of a repository, guaranteed to be inside the root.

        Asked on every request, so it checks two ``lstat`` results rather
        than resolving the whole path (a dozen of them, ~4x the time).
        """
        leaf = f"{ref.name}.git" if vcs == "git" else ref.name
        owner = self.root / ref.owner
        path = owner / leaf
        # The root is resolved and both names are single validated path
        # segments, so only a symlink at one of the two can lead elsewhere:
        # refused even when it points back inside the root.
        if os.path.islink(owner) or os.path.islink(path):
            log.warning("refusing %s: %s or %s is a symlink", ref, owner, path)
            raise StorageError(f"{ref}: a symlink in the repository tree")
        return path

    def create(self, ref: RepoName, vcs: str, *, readme: str | None = None) -> Path:
        """Create an empty repository; with ``readme``, one commit adding README."""
        path = self.path(ref, vcs)
        if path.exists():
            raise StorageError(f"{path} already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        if vcs == "git":
            _create_git(path, readme)
        else:
            _create_hg(path, readme)
        return path

    def delete(self, ref: RepoName, vcs: str) -> None:
        """Remove a repository: renamed aside first, so no reader sees half a tree."""
        path = self.path(ref, vcs)
        if not path.exists():
            return
        doomed = path.with_name(f".deleted-{path.name}-{secrets.token_hex(6)}")
        path.rename(doomed)
        shutil.rmtree(doomed)


def _create_git(path: Path, readme: str | None) -> None:
    repo = GitRepo.init_bare(str(path), mkdir=True)
    try:
        # Receiving a pack must not leave the repository half-updated; dulwich
        # writes objects before refs, and refs atomically, which is enough.
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
        if readme is None:
            return
        blob = Blob.from_string(readme.encode())
        tree = Tree()
        tree.add(b"README.md", 0o100644, blob.id)
        commit = Commit()
        commit.tree = tree.id
        commit.author = commit.committer = b"hostd <hostd@localhost>"
        commit.author_time = commit.commit_time = 0
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"Initial commit\n"
        for obj in (blob, tree, commit):
            repo.object_store.add_object(obj)
        repo.refs[Ref(b"refs/heads/main")] = commit.id
    finally:
        repo.close()


def hg_command() -> list[str]:
    """The Mercurial of this virtualenv, so server and tooling agree on versions."""
    candidate = Path(sys.executable).parent / "hg"
    return [str(candidate)] if candidate.exists() else ["hg"]


def _create_hg(path: Path, readme: str | None) -> None:
    hg = hg_command() + ["--config", "ui.username=hostd <hostd@localhost>"]
    env = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(hg + ["init", str(path)], check=True, env=env, capture_output=True)
    if readme is None:
        return
    (path / "README.md").write_text(readme)
    subprocess.run(
        hg + ["-R", str(path), "commit", "-A", "-m", "Initial commit", "-d", "0 0"],
        check=True, env=env, capture_output=True,
    )
    # A served repository keeps no working copy: update to the null revision.
    subprocess.run(hg + ["-R", str(path), "update", "null"], check=True, env=env, capture_output=True)
