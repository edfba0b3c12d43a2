"""Ref advertisements: refs read in one pass give exactly what dulwich gives reading them twice."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
import webtest
from dulwich.objects import ObjectID
from dulwich.protocol import Protocol
from dulwich.repo import Repo
from dulwich.server import DictBackend, ReceivePackHandler

from hostd.git.advert import read_refs, receive_pack_advertisement, respond, service_header
from tests.hostd.conftest import GIT, run_git


def _commit(git_dir: Path, message: str, parent: str | None = None) -> str:
    tree = run_git(git_dir, "mktree")
    return run_git(git_dir, "commit-tree", tree, "-m", message, *(["-p", parent] if parent else []))


def _branches_and_tags(git_dir: Path) -> None:
    first = _commit(git_dir, "first")
    second = _commit(git_dir, "second", first)
    run_git(git_dir, "update-ref", "refs/heads/main", second)
    run_git(git_dir, "update-ref", "refs/heads/feature/x", first)
    run_git(git_dir, "tag", "-a", "v1", "-m", "annotated", first)
    run_git(git_dir, "tag", "light", second)
    run_git(git_dir, "pack-refs", "--all")
    run_git(git_dir, "update-ref", "refs/heads/main", _commit(git_dir, "third", second))  # loose over packed
    run_git(git_dir, "update-ref", "refs/heads/loose-only", first)


def _symbolic(git_dir: Path) -> None:
    _branches_and_tags(git_dir)
    run_git(git_dir, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/heads/feature/x")  # onto a packed ref


def _dangling_and_looping(git_dir: Path) -> None:
    _branches_and_tags(git_dir)
    (git_dir / "refs" / "heads" / "dangling").write_text("ref: refs/heads/nowhere\n")
    (git_dir / "refs" / "heads" / "loop-a").write_text("ref: refs/heads/loop-b\n")
    (git_dir / "refs" / "heads" / "loop-b").write_text("ref: refs/heads/loop-a\n")


def _empty(git_dir: Path) -> None:
    """Nothing pushed yet: HEAD names a branch that does not exist."""


SHAPES: dict[str, Callable[[Path], None]] = {
    "empty": _empty,
    "branches and tags, packed and loose": _branches_and_tags,
    "another symbolic ref": _symbolic,
    "dangling and looping symbolic refs": _dangling_and_looping,
}


@pytest.fixture(params=list(SHAPES))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repo:
    git_dir = tmp_path / "repo.git"
    subprocess.run([GIT, "init", "-q", "--bare", "-b", "main", str(git_dir)], check=True)
    SHAPES[request.param](git_dir)
    return Repo(str(git_dir))


def test_read_refs_is_get_refs_and_get_symrefs(repo: Repo) -> None:
    assert read_refs(repo.refs) == (repo.get_refs(), repo.refs.get_symrefs())


def test_receive_pack_advertisement_is_dulwichs_byte_for_byte(repo: Repo) -> None:
    out = BytesIO()
    handler = ReceivePackHandler(DictBackend({"/": repo}), ["/"], Protocol(BytesIO().read, out.write),
                                 stateless_rpc=True, advertise_refs=True)
    handler.handle()
    zero = ObjectID(b"0" * repo.object_format.hex_length)
    assert receive_pack_advertisement(repo.refs, handler.capabilities(), zero) == out.getvalue()


def test_respond_sends_an_uncacheable_advertisement_and_nothing_to_head() -> None:
    body = service_header("git-receive-pack") + b"0000"
    assert body == b"001f# service=git-receive-pack\n00000000"

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        return respond(environ, start_response, "git-receive-pack", body)

    client = webtest.TestApp(app)
    got = client.get("/")
    assert (got.body, got.content_type) == (body, "application/x-git-receive-pack-advertisement")
    assert got.headers["Cache-Control"] == "no-cache, max-age=0, must-revalidate"
    head = client.head("/")
    assert head.body == b"" and head.headers["Content-Length"] == str(len(body))
