"""Maintenance removes only what is abandoned, and packs what is live."""

from __future__ import annotations

import os
import time

from dulwich.repo import Repo as GitRepo

from hostd.git.cache import PACK_CACHE_DIR
from hostd.ops.maintain import Report, maintain_git, maintain_hg, remove_stale_git_files
from tests.hostd.conftest import Site


def _age(path: os.PathLike[str], seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_locks_and_temporary_packs_are_removed_fresh_ones_kept(site: Site) -> None:
    ref = site.repo("alice", "code", "git")
    git_dir = site.storage.path(ref, "git")
    stale_lock = git_dir / "refs" / "heads" / "main.lock"
    fresh_lock = git_dir / "refs" / "heads" / "other.lock"
    stale_pack = git_dir / "objects" / "tmp_pack_abc"
    live_pack = git_dir / "objects" / "pack" / "tmpxyz.pack"
    (git_dir / PACK_CACHE_DIR).mkdir()
    stale_copy = git_dir / PACK_CACHE_DIR / ".tmp-killed"
    cached = git_dir / PACK_CACHE_DIR / "0123abcd"
    for path in (stale_lock, fresh_lock, stale_pack, live_pack, stale_copy, cached):
        path.write_bytes(b"x")
    _age(stale_lock, 600)
    for old in (stale_pack, stale_copy, cached):
        _age(old, 3600)
    _age(live_pack, 60)  # an upload still being written
    report = Report(str(ref))
    remove_stale_git_files(git_dir, report)
    assert not stale_lock.exists() and not stale_pack.exists() and not stale_copy.exists()
    assert fresh_lock.exists() and live_pack.exists() and cached.exists()
    assert report.actions == ["removed stale refs/heads/main.lock", "removed stale objects/tmp_pack_abc",
                              f"removed stale {PACK_CACHE_DIR}/.tmp-killed"]


def test_maintain_git_packs_refs_and_objects(site: Site) -> None:
    ref = site.repo("alice", "code", "git")
    git_dir = site.storage.path(ref, "git")
    report = Report(str(ref))
    maintain_git(git_dir, report)
    assert report.actions == ["packed refs", "repacked objects", "pruned packed loose objects"]
    assert (git_dir / "packed-refs").exists()
    assert not any((git_dir / "objects").glob("??/*"))
    repo = GitRepo(str(git_dir))
    assert repo.refs[b"refs/heads/main"] in repo.object_store
    repo.close()


def test_maintain_hg_recovers_an_interrupted_transaction(site: Site) -> None:
    ref = site.repo("alice", "notes", "hg")
    hg_dir = site.storage.path(ref, "hg")
    store = hg_dir / ".hg" / "store"
    # A journal whose one entry truncates the changelog to its current size:
    # the state a push killed right after opening its transaction leaves.
    size = (store / "00changelog.i").stat().st_size
    (store / "journal").write_bytes(b"00changelog.i\x00%d\n" % size)
    report = Report(str(ref))
    maintain_hg(hg_dir, report)
    assert report.actions[0] == "recovered interrupted transaction", report.actions
    assert not (store / "journal").exists()
    assert report.actions[-1] == "updated caches"
