"""Fixtures for hostd unit tests: a data directory with accounts and storage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hostd.accounts import Accounts
from hostd.database import Database
from hostd.names import RepoName
from hostd.policy import RepositoryPolicy
from hostd.storage import Storage


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


@pytest.fixture
def site(tmp_path: Path) -> Site:
    db = Database(tmp_path / "hostd.db")
    db.create()
    return Site(Accounts(db), Storage(tmp_path / "repos"))
