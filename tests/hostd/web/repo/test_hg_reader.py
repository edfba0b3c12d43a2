"""What only Mercurial has: secret and hidden changesets, the ``@`` bookmark, named and closed branches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostd.web.repo.hg import HgReader
from hostd.web.repo.model import NotFound
from tests.hostd.web.repo.conftest import hg, write


def _repo(tmp_path: Path) -> Path:
    work = tmp_path / "r"
    hg(tmp_path, "init", str(work))
    write(work, b"a.txt", b"a\n")
    hg(work, "commit", "-A", "-q", "-m", "one")
    return work


def _node(work: Path, rev: str = ".") -> str:
    return hg(work, "log", "-r", rev, "-T", "{node}")


def test_secret_and_hidden_changesets_are_never_shown(tmp_path: Path) -> None:
    work = _repo(tmp_path)
    public = _node(work)
    write(work, b"a.txt", b"secret\n")
    hg(work, "commit", "-q", "--secret", "-m", "secret work")
    secret = _node(work)
    hg(work, "update", "-q", "-r", public)
    write(work, b"b.txt", b"b\n")
    hg(work, "commit", "-A", "-q", "-m", "to be amended")
    amended = _node(work)
    write(work, b"b.txt", b"b, amended\n")
    hg(work, "--config", "experimental.evolution=all", "commit", "-q", "--amend", "-m", "amended")
    with HgReader(work) as reader:
        for gone in (secret, amended):
            with pytest.raises(NotFound):
                reader.resolve(gone.encode())
            with pytest.raises(NotFound):
                reader.commit(gone)
        shown = {commit.id for commit in reader.history(_node(work), 0, 50)}
        assert secret not in shown and amended not in shown and public in shown
        assert reader.refs().default is not None and reader.refs().default.target == _node(work)  # type: ignore[union-attr]


def test_the_at_bookmark_is_the_default_and_closed_branches_are_not_listed(tmp_path: Path) -> None:
    work = _repo(tmp_path)
    first = _node(work)
    hg(work, "branch", "-q", "stable")
    write(work, b"a.txt", b"stable\n")
    hg(work, "commit", "-q", "-m", "on stable")
    hg(work, "branch", "-q", "old")
    hg(work, "commit", "-q", "-m", "opening old")
    hg(work, "commit", "-q", "--close-branch", "-m", "closing old")
    hg(work, "bookmark", "-r", first, "@")
    with HgReader(work) as reader:
        refs = reader.refs()
        assert refs.default is not None and (refs.default.kind, refs.default.name) == ("bookmark", b"@")
        assert refs.default.target == first
        assert [ref.name for ref in refs.branches] == [b"default", b"stable"]
        assert reader.resolve(b"stable/a.txt").path == b"a.txt"


def test_a_name_that_is_a_bookmark_and_a_branch_is_the_bookmark(tmp_path: Path) -> None:
    work = _repo(tmp_path)
    first = _node(work)
    write(work, b"a.txt", b"two\n")
    hg(work, "commit", "-q", "-m", "two")
    hg(work, "bookmark", "--force", "-r", first, "default")
    with HgReader(work) as reader:
        assert reader.resolve(b"default").commit == first  # as `hg log -r default` takes it


def test_a_repository_without_changesets(tmp_path: Path) -> None:
    hg(tmp_path, "init", str(tmp_path / "r"))
    with HgReader(tmp_path / "r") as reader:
        refs = reader.refs()
        assert (refs.default, refs.branches, refs.tags, refs.bookmarks) == (None, (), (), ())
        with pytest.raises(NotFound):
            reader.resolve(b"default")
        with pytest.raises(NotFound):
            reader.resolve(b"0" * 40)


def test_hgweb_still_starts_in_a_process_that_read_a_repository_first(tmp_path: Path) -> None:
    """Mercurial 7.2 registers template keywords when a repository opens; hgweb's later import of
    templatekw then refused them as duplicates, unless the reader ran Mercurial's initialization first."""
    work = _repo(tmp_path)
    script = (
        "import sys; from pathlib import Path; from hostd.web.repo.hg import HgReader\n"
        "with HgReader(Path(sys.argv[1])) as reader: reader.refs()\n"
        "from mercurial import ui; from mercurial.hgweb import hgweb\n"
        "hgweb(sys.argv[1].encode(), baseui=ui.ui())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(work)], check=True, timeout=60)
