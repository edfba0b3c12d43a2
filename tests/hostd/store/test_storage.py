"""Storage.path: a repository's directory is always inside the root, whatever is planted in the tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import webtest

from hostd.git.app import GitApp
from hostd.hg.app import HgApp
from hostd.names import RepoName
from hostd.store.storage import Storage, StorageError
from singlemalt import Action
from tests.hostd.conftest import Site
from tests.hostd.hg.test_app import DummyAuthorized
from tests.hostd.web.conftest import browse

ALICE_NOTES = RepoName("alice", "notes")


def test_path_of_an_existing_or_missing_repository_is_under_the_root(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "repos")
    assert storage.path(ALICE_NOTES, "git") == storage.root / "alice" / "notes.git"
    assert storage.path(ALICE_NOTES, "hg") == storage.root / "alice" / "notes"


@pytest.mark.parametrize(
    ("link", "points_to"),
    [
        # the owner's directory, to a directory outside the root
        ("alice", "outside"),
        # the owner's directory, to another owner's inside the root
        ("alice", "repos/mallory"),
        # the repository, to a repository of another owner
        ("alice/notes.git", "repos/mallory/loot.git"),
        # the repository, outside the root
        ("alice/notes.git", "outside"),
        # a dangling link: still not a directory of ours
        ("alice/notes.git", "nowhere"),
    ],
)
def test_a_symlink_below_the_root_is_refused(tmp_path: Path, link: str, points_to: str) -> None:
    storage = Storage(tmp_path / "repos")
    (tmp_path / "outside").mkdir()
    (storage.root / "mallory" / "loot.git").mkdir(parents=True)
    if "/" in link:
        (storage.root / "alice").mkdir()
    (storage.root / link).symlink_to(tmp_path / points_to)
    with pytest.raises(StorageError, match="symlink"):
        storage.path(ALICE_NOTES, "git")


def test_a_symlinked_root_is_followed_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "repos").symlink_to(tmp_path / "real")
    storage = Storage(tmp_path / "repos")
    assert storage.path(ALICE_NOTES, "hg") == tmp_path / "real" / "alice" / "notes"


def _plant(site: Site, vcs: str) -> None:
    """alice/notes-VCS exists in the database, but its directory is a link to mallory's repository."""
    loot = site.repo("mallory", f"loot-{vcs}", vcs)
    ref = site.repo("alice", f"notes-{vcs}", vcs)
    path = site.storage.path(ref, vcs)
    site.storage.delete(ref, vcs)
    path.symlink_to(site.storage.path(loot, vcs))


def test_pools_answer_not_found_for_a_symlinked_repository(site: Site) -> None:
    _plant(site, "hg")
    hg = webtest.TestApp(DummyAuthorized(site.decided(HgApp(site.storage), "hg"), Action.READ),
                         extra_environ={"wsgi.url_scheme": "https"})
    assert b"not found" in hg.get("/alice/notes-hg?cmd=capabilities", status=404).body
    hg.get("/mallory/loot-hg?cmd=capabilities", status=200)

    _plant(site, "git")
    git = webtest.TestApp(site.decided(GitApp(site.storage, max_request_bytes=1 << 20), "git"))
    assert b"not found" in git.get("/alice/notes-git.git/info/refs?service=git-upload-pack", status=404).body
    git.get("/mallory/loot-git.git/info/refs?service=git-upload-pack", status=200)

    web = browse(site, "alice")
    for vcs in ("hg", "git"):
        web.get(f"/alice/notes-{vcs}", status=404)
