"""The real git client against the real stack, over HTTPS through HAProxy."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import PACK_PATHS, each_pack_path
from tests.e2e.stackfixture import Stack

PASSWORD = "correct horse battery"
HTTP_VERSIONS = ["HTTP/1.1", "HTTP/2"]


@pytest.fixture(scope="module", params=PACK_PATHS)
def stack(request: pytest.FixtureRequest) -> Stack:
    """Every test here runs with git's upload-pack and with dulwich's."""
    return each_pack_path(request)


@pytest.fixture(scope="module")
def people(stack: Stack) -> dict[str, str]:
    """alice owns private and public repositories; bob reads; carol has nothing."""
    for name in ("alice", "bob", "carol"):
        stack.add_user(name, PASSWORD)
    stack.hostd("repo", "create", "alice/private", "--vcs", "git")
    stack.hostd("repo", "create", "alice/open", "--vcs", "git", "--public")
    stack.hostd("grant", "bob", "alice/private", "read")
    return {"alice": PASSWORD, "bob": PASSWORD, "carol": PASSWORD}


def _commit(stack: Stack, work: Path, name: str, data: bytes) -> str:
    (work / name).write_bytes(data)
    stack.clients.git("add", name, cwd=work)
    stack.clients.git("commit", "-q", "-m", f"add {name}", cwd=work)
    return stack.clients.git("rev-parse", "HEAD", cwd=work).stdout.strip()


def _new_repo(stack: Stack) -> str:
    name = f"alice/r{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", name, "--vcs", "git")
    return name


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_clone_commit_push_clone_again(stack: Stack, people: dict[str, str], tmp_path: Path, version: str) -> None:
    repo = _new_repo(stack)
    url = stack.url(f"{repo}.git", "alice", PASSWORD)
    git = stack.clients.git
    git("-c", f"http.version={version}", "clone", "-q", url, str(tmp_path / "a"))
    head = _commit(stack, tmp_path / "a", "hello.txt", b"hello\n")
    git("-c", f"http.version={version}", "push", "-q", "origin", "HEAD:main", cwd=tmp_path / "a")
    git("-c", f"http.version={version}", "clone", "-q", url, str(tmp_path / "b"))
    assert git("rev-parse", "HEAD", cwd=tmp_path / "b").stdout.strip() == head
    assert (tmp_path / "b" / "hello.txt").read_bytes() == b"hello\n"


@pytest.mark.parametrize("version", HTTP_VERSIONS)
@pytest.mark.parametrize("attempt", range(5))
def test_push_larger_than_one_mebibyte(
    stack: Stack, people: dict[str, str], tmp_path: Path, version: str, attempt: int
) -> None:
    """git sends bodies over 1 MiB chunked; a prototype hung on ~1 in 5 over h2."""
    repo = _new_repo(stack)
    url = stack.url(f"{repo}.git", "alice", PASSWORD)
    git = stack.clients.git
    work = tmp_path / "w"
    git("init", "-q", str(work))
    head = _commit(stack, work, "blob.bin", os.urandom(3 * 1024 * 1024))
    result = git("-c", f"http.version={version}", "push", "--porcelain", url, "HEAD:refs/heads/main",
                 cwd=work, timeout=120, extra_env={"GIT_TRACE_CURL_NO_DATA": "1"})
    assert "refs/heads/main" in result.stdout
    listed = git("ls-remote", url, "refs/heads/main", timeout=60).stdout.split()
    assert listed[0] == head


def test_anonymous_clone_of_public_repository(stack: Stack, people: dict[str, str], tmp_path: Path) -> None:
    stack.clients.git("clone", "-q", stack.url("demo/hello.git"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "README.md").exists()
    # Without the .git suffix too.
    stack.clients.git("clone", "-q", stack.url("demo/hello"), str(tmp_path / "d"))


def test_anonymous_push_to_public_repository_is_challenged(
    stack: Stack, people: dict[str, str], tmp_path: Path
) -> None:
    git = stack.clients.git
    git("clone", "-q", stack.url("alice/open.git"), str(tmp_path / "c"))
    _commit(stack, tmp_path / "c", "x.txt", b"x")
    result = git("push", "origin", "HEAD:main", cwd=tmp_path / "c", check=False)
    assert result.returncode != 0
    assert "could not read Username" in result.stderr or "Authentication failed" in result.stderr


@pytest.mark.parametrize("path", ["alice/private.git", "alice/does-not-exist.git"])
def test_anonymous_gets_the_same_challenge_whether_or_not_the_repo_exists(
    stack: Stack, people: dict[str, str], tmp_path: Path, path: str
) -> None:
    result = stack.clients.git("ls-remote", stack.url(path), check=False)
    assert result.returncode != 0
    assert "could not read Username" in result.stderr


def test_wrong_password_is_refused(stack: Stack, people: dict[str, str]) -> None:
    result = stack.clients.git("ls-remote", stack.url("alice/private.git", "alice", "wrong-password"), check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr


@pytest.mark.parametrize("path", ["alice/private.git", "alice/does-not-exist.git"])
def test_user_without_access_sees_not_found(stack: Stack, people: dict[str, str], path: str) -> None:
    result = stack.clients.git("ls-remote", stack.url(path, "carol", PASSWORD), check=False)
    assert result.returncode != 0
    assert "not found" in result.stderr


def test_reader_may_clone_but_not_push(stack: Stack, people: dict[str, str], tmp_path: Path) -> None:
    git = stack.clients.git
    owner_url = stack.url("alice/private.git", "alice", PASSWORD)
    git("clone", "-q", owner_url, str(tmp_path / "o"))
    _commit(stack, tmp_path / "o", "seed.txt", b"seed\n")
    git("push", "-q", "origin", "HEAD:main", cwd=tmp_path / "o")

    reader_url = stack.url("alice/private.git", "bob", PASSWORD)
    git("clone", "-q", reader_url, str(tmp_path / "r"))
    _commit(stack, tmp_path / "r", "nope.txt", b"nope\n")
    result = git("push", "origin", "HEAD:main", cwd=tmp_path / "r", check=False)
    assert result.returncode != 0
    assert "403" in result.stderr
    assert "read-only access" in result.stderr


def test_parallel_large_pushes_over_http2_all_complete(stack: Stack, people: dict[str, str], tmp_path: Path) -> None:
    """Concurrent >1 MiB pushes over h2, the load under which libcurl 7.88
    stalled at the end of a body when HAProxy's h2 window was small (about one
    push in ten at 64 KiB): every push must finish, and land."""
    import concurrent.futures

    def push(index: int) -> tuple[str, str]:
        repo = _new_repo(stack)
        url = stack.url(f"{repo}.git", "alice", PASSWORD)
        work = tmp_path / f"w{index}"
        stack.clients.git("init", "-q", str(work))
        head = _commit(stack, work, "blob.bin", os.urandom(3 * 1024 * 1024))
        stack.clients.git("-c", "http.version=HTTP/2", "push", "-q", url, "HEAD:refs/heads/main", cwd=work,
                          timeout=60)
        return head, stack.clients.git("ls-remote", url, "refs/heads/main", timeout=60).stdout.split()[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(push, range(16)))
    assert all(head == landed for head, landed in results)
