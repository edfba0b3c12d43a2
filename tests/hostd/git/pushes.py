"""Pushes as bytes on the wire, for the git pool's app tests: commits, packs, request bodies."""

from __future__ import annotations

import os
from collections.abc import Sequence
from io import BytesIO

import webtest
from dulwich.objects import Blob, Commit, Tree
from dulwich.pack import write_pack_objects
from dulwich.refs import Ref
from dulwich.repo import Repo as DulwichRepo

from hostd.names import RepoName
from tests.hostd.conftest import Site

ZERO = b"0" * 40
BOGUS = b"1" * 40
MAIN = Ref(b"refs/heads/main")
OTHER = Ref(b"refs/heads/other")


def pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def disk(site: Site, ref: RepoName) -> DulwichRepo:
    return DulwichRepo(str(site.storage.path(ref, "git")))


def child_commit(repo: DulwichRepo, message: bytes = b"child\n") -> Commit:
    """A new commit on top of main (not yet stored anywhere)."""
    head = repo.refs[MAIN]
    child = Commit()
    child.tree = repo[head].tree  # type: ignore[attr-defined]
    child.parents = [head]
    child.author = child.committer = b"Test <test@example.com>"
    child.author_time = child.commit_time = 1700000000
    child.author_timezone = child.commit_timezone = 0
    child.message = message
    return child


def child_pack(repo: DulwichRepo) -> tuple[bytes, bytes, bytes]:
    """(head, a new commit on top of it, a pack holding just that commit)."""
    child = child_commit(repo)
    pack = BytesIO()
    write_pack_objects(pack, [child], object_format=repo.object_format)
    return repo.refs[MAIN], child.id, pack.getvalue()


def receive_pack(
    app: webtest.TestApp, commands: list[tuple[bytes, bytes, bytes]], pack: bytes = b"", caps: bytes = b"report-status"
) -> bytes:
    """POST a push (without side-band, so the report is plain pkt-lines)."""
    lines = [b"%s %s %s" % command for command in commands]
    lines[0] += b"\0" + caps
    body = b"".join(pkt(line + b"\n") for line in lines) + b"0000" + pack
    response = app.post("/alice/demo.git/git-receive-pack", body, content_type="application/x-git-receive-pack-request")
    assert response.status_int == 200
    return response.body  # type: ignore[no-any-return]


LIMIT = 1 << 20
TOO_LARGE = b"push is larger than the server's limit of 1 MiB"


def big_pack(repo: DulwichRepo, size: int) -> tuple[bytes, bytes, bytes]:
    """(head, a new commit, a pack of it with a random blob of ``size`` bytes)."""
    blob = Blob.from_string(os.urandom(size))
    tree = Tree()
    tree.add(b"big.bin", 0o100644, blob.id)
    child = child_commit(repo)
    child.tree = tree.id
    pack = BytesIO()
    write_pack_objects(pack, [blob, tree, child], object_format=repo.object_format)
    return repo.refs[MAIN], child.id, pack.getvalue()


def push_body(commands: Sequence[tuple[bytes, bytes, bytes]], pack: bytes, caps: bytes = b"report-status") -> bytes:
    lines = [b"%s %s %s" % command for command in commands]
    lines[0] += b"\0" + caps
    return b"".join(pkt(line + b"\n") for line in lines) + b"0000" + pack


def post_chunked(app: webtest.TestApp, path: str, body: BytesIO, content_type: str,
                  **headers: str) -> webtest.TestResponse:
    """POST the way gunicorn hands over a chunked (or HTTP/2) body: no CONTENT_LENGTH."""
    request = webtest.TestRequest.blank(path, method="POST", content_type=content_type, headers=headers)
    request.environ.pop("CONTENT_LENGTH", None)
    request.environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    request.environ["wsgi.input"] = body
    return app.do_request(request, status="*")


def temp_files(site: Site, ref: RepoName) -> list[str]:
    """What a push in progress keeps: dulwich's temporary packs, git's quarantine."""
    objects = site.storage.path(ref, "git") / "objects"
    patterns = ("tmp_pack_*", "pack/tmp*", "tmp_objdir-incoming-*")
    return sorted(path.name for pattern in patterns for path in objects.glob(pattern))


