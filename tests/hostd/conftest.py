"""Fixtures for hostd unit tests: a data directory with accounts and storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostd.guard.policy import RepositoryPolicy
from hostd.names import RepoName
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.refstate import RACY_SECONDS
from hostd.store.storage import Storage
from hostd.web.classify import classify_web
from singlemalt import Allowed, Malformed, Target, classify_git, classify_hg

GIT = shutil.which("git") or "git"


@dataclass
class Site:
    accounts: Accounts
    storage: Storage

    def repo(self, owner: str, name: str, vcs: str, *, public: bool = False, readme: str | None = "hi") -> RepoName:
        ref = RepoName(owner, name)
        if self.accounts.user(owner) is None:
            self.accounts.add_user(owner, "password-" + owner)
        self.accounts.add_repo(ref, vcs, public)
        self.storage.create(ref, vcs, readme=readme)
        return ref

    def policy(self, vcs: str | None) -> RepositoryPolicy:
        return RepositoryPolicy(self.accounts, vcs=vcs)

    def decided(self, app: Any, vcs: str | None) -> Decided:
        """``app`` behind a stand-in for singlemalt that allows every request (see :class:`Decided`)."""
        classify = {"git": classify_git, "hg": classify_hg, None: classify_web}[vcs]
        return Decided(app, classify, self.policy(vcs))


class Decided:
    """Stands in for singlemalt in front of a pool app: classifies the request
    with the pool's own classifier and allows it, carrying the repository the
    pool's policy resolves, as singlemalt's decision does. No authentication:
    ``REMOTE_USER`` is whatever the test put in the environ."""

    def __init__(self, app: Any, classify: Callable[[dict[str, Any]], Target | Malformed],
                 policy: RepositoryPolicy) -> None:
        self.app = app
        self.classify = classify
        self.policy = policy

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # A target already set (by a test's own stand-in) is kept.
        target = environ.get("singlemalt.target") or self.classify(environ)
        if isinstance(target, Target):
            environ["singlemalt.target"] = target
            environ["singlemalt.decision"] = Allowed("test", resource=self.policy.resolve(target.repository))
        return self.app(environ, start_response)


@pytest.fixture
def site(tmp_path: Path, database: Database) -> Site:
    return Site(Accounts(database), Storage(tmp_path / "repos"))


@pytest.fixture
def repo(site: Site) -> tuple[RepoName, Path]:
    """A git repository ``alice/demo`` whose refs are old enough for the ref-state caches."""
    ref = site.repo("alice", "demo", "git")
    git_dir = site.storage.path(ref, "git")
    age(git_dir)
    return ref, git_dir


def age(git_dir: Path) -> None:
    """Move every timestamp of a repository out of the racy window (see ``hostd.store.refstate``)."""
    past = time.time() - 10 * RACY_SECONDS
    for path in [git_dir, *git_dir.rglob("*")]:
        os.utime(path, (past, past), follow_symlinks=False)


def run_git(git_dir: Path, *args: str) -> str:
    """git in ``git_dir`` with no user or system configuration; its stdout, stripped."""
    env = {"PATH": os.environ["PATH"], "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run([GIT, "--git-dir", str(git_dir), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
