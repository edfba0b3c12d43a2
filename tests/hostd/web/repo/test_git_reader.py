"""What only git has: submodules, tags of trees, HEAD naming a missing branch, a repository without commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostd.web.repo.git import GitReader
from hostd.web.repo.model import NotFound
from tests.hostd.web.repo.conftest import Story, git, write


def test_a_submodule_is_listed_as_one_never_entered(git_story: Story, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    git(work, "init", "-q")
    write(work, b"a.txt", b"a\n")
    git(work, "add", "a.txt")
    pinned = "1234567890abcdef1234567890abcdef12345678"
    git(work, "update-index", "--add", "--cacheinfo", f"160000,{pinned},vendor/lib")
    git(work, "commit", "-q", "-m", "with a submodule")
    head = git(work, "rev-parse", "HEAD")
    with GitReader(work / ".git") as reader:
        (entry,) = reader.tree(head, b"vendor")
        assert (entry.name, entry.kind, entry.target) == (b"lib", "submodule", pinned.encode())
        with pytest.raises(NotFound, match="submodule"):
            reader.file(head, b"vendor/lib")
        with pytest.raises(NotFound):
            reader.tree(head, b"vendor/lib/inside")
        (change,) = [file for file in reader.diff(head).files if file.path == b"vendor/lib"]
        assert change.note == f"Submodule: none → {pinned[:12]}."


def test_tags_of_trees_are_left_out_and_head_may_name_a_missing_branch(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    git(work, "init", "-q")
    write(work, b"a.txt", b"a\n")
    git(work, "add", "a.txt")
    git(work, "commit", "-q", "-m", "one")
    git(work, "tag", "tree-tag", "HEAD^{tree}")
    git(work, "tag", "light")
    git(work, "branch", "-m", "main", "trunk")
    git(work, "symbolic-ref", "HEAD", "refs/heads/gone")
    with GitReader(work / ".git") as reader:
        refs = reader.refs()
        assert [tag.name for tag in refs.tags] == [b"light"]
        assert refs.default is not None and refs.default.name == b"trunk"  # HEAD's branch is gone: the first
        with pytest.raises(NotFound):
            reader.resolve(b"tree-tag")
    git(work, "branch", "zzz", "trunk")
    git(work, "symbolic-ref", "HEAD", "refs/heads/zzz")
    with GitReader(work / ".git") as reader:
        default = reader.refs().default
        assert default is not None and default.name == b"zzz"  # HEAD's branch, not the first one


def test_a_repository_without_commits(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    git(work, "init", "-q", "--bare")
    with GitReader(work) as reader:
        refs = reader.refs()
        assert (refs.default, refs.branches, refs.tags) == (None, (), ())
        with pytest.raises(NotFound):
            reader.resolve(b"main")
