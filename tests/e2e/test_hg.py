"""The real hg client against the real stack, over HTTPS through HAProxy."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def hg_people(stack: Stack) -> None:
    for name in ("hanna", "hugo", "hedy"):
        stack.add_user(name, PASSWORD)
    stack.hostd("repo", "create", "hanna/private", "--vcs", "hg")
    stack.hostd("grant", "hugo", "hanna/private", "read")


def _commit(stack: Stack, work: Path, name: str, data: bytes) -> str:
    (work / name).write_bytes(data)
    stack.clients.hg("commit", "-A", "-m", f"add {name}", cwd=work)
    return stack.clients.hg("log", "-r", ".", "-T", "{node}", cwd=work).stdout.strip()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_clone_commit_push_clone_again(stack: Stack, hg_people: None, tmp_path: Path, host: str) -> None:
    """Both host forms verify against the CA: hg needs an IP-typed SAN for 127.0.0.1."""
    repo = f"hanna/r{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", repo, "--vcs", "hg")
    url = stack.url(repo, "hanna", PASSWORD).replace("127.0.0.1", host)
    hg = stack.clients.hg
    hg("clone", url, str(tmp_path / "a"))
    node = _commit(stack, tmp_path / "a", "hello.txt", b"hello\n")
    hg("push", url, cwd=tmp_path / "a")  # hg keeps no password in the saved default path
    hg("clone", url, str(tmp_path / "b"))
    assert hg("log", "-r", "tip", "-T", "{node}", cwd=tmp_path / "b").stdout.strip() == node
    assert (tmp_path / "b" / "hello.txt").read_bytes() == b"hello\n"


def test_anonymous_clone_of_public_repository(stack: Stack, hg_people: None, tmp_path: Path) -> None:
    stack.clients.hg("clone", stack.url("demo/hello-hg"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "README.md").exists()


def test_anonymous_access_to_private_repository_is_challenged(stack: Stack, hg_people: None, tmp_path: Path) -> None:
    for path in ("hanna/private", "hanna/nothing-here"):
        result = stack.clients.hg("clone", stack.url(path), str(tmp_path / path.replace("/", "_")), check=False)
        assert result.returncode != 0
        assert "authorization required" in (result.stderr + result.stdout)


def test_wrong_password_is_refused(stack: Stack, hg_people: None, tmp_path: Path) -> None:
    result = stack.clients.hg("clone", stack.url("hanna/private", "hanna", "wrong-password"),
                              str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "authorization failed" in (result.stderr + result.stdout)


def test_user_without_access_sees_not_found(stack: Stack, hg_people: None, tmp_path: Path) -> None:
    result = stack.clients.hg("clone", stack.url("hanna/private", "hedy", PASSWORD), str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "404" in (result.stderr + result.stdout)


def test_reader_may_clone_but_not_push(stack: Stack, hg_people: None, tmp_path: Path) -> None:
    hg = stack.clients.hg
    owner_url = stack.url("hanna/private", "hanna", PASSWORD)
    hg("clone", owner_url, str(tmp_path / "o"))
    _commit(stack, tmp_path / "o", "seed.txt", b"seed\n")
    hg("push", owner_url, cwd=tmp_path / "o")
    reader_url = stack.url("hanna/private", "hugo", PASSWORD)
    hg("clone", reader_url, str(tmp_path / "r"))
    _commit(stack, tmp_path / "r", "nope.txt", b"nope\n")
    result = hg("push", reader_url, cwd=tmp_path / "r", check=False)
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "403" in output
    assert "read-only access" in output
