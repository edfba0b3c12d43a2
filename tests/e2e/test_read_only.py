"""Read-only mode through the real stack: ``hostd flag set read_only on`` stops git and hg pushes.

Clones and pulls go on. The message each client prints is what the user
sees during maintenance, so it is asserted on the real clients' output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostd.settings import Ports
from hostd.store.flags import LOCAL_TTL
from tests.e2e.stackfixture import Stack

PASSWORD = "correct horse battery"
MESSAGE = "read-only for maintenance"


@pytest.fixture(scope="module")
def ro_people(stack: Stack) -> None:
    """rolf owns a git repository, rita an hg one."""
    for name in ("rolf", "rita"):
        stack.add_user(name, PASSWORD)
    stack.hostd("repo", "create", "rolf/frozen", "--vcs", "git")
    stack.hostd("repo", "create", "rita/frozen", "--vcs", "hg")


@pytest.fixture
def read_only(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """Switch the flag as an operator would; always off again afterwards (the stack is shared)."""
    # The admin CLI runs with the installation's environment, so it reaches
    # the stack's memcached and workers follow within the process TTL.
    monkeypatch.setenv("HOSTD_BIND", stack.settings.bind)
    for name in Ports.__dataclass_fields__:
        monkeypatch.setenv(f"HOSTD_{name.upper()}_PORT", str(getattr(stack.settings.ports, name)))

    def switch(on: bool) -> None:
        result = stack.hostd("flag", "set", "read_only", "on" if on else "off")
        assert "every worker sees it within" in result.stdout, result.stdout
        time.sleep(LOCAL_TTL + 0.5)

    try:
        yield switch
    finally:
        switch(False)


def _git_commit(stack: Stack, work: Path, name: str, data: bytes) -> None:
    (work / name).write_bytes(data)
    stack.clients.git("add", name, cwd=work)
    stack.clients.git("commit", "-q", "-m", f"add {name}", cwd=work)


def _hg_commit(stack: Stack, work: Path, name: str, data: bytes) -> None:
    (work / name).write_bytes(data)
    stack.clients.hg("commit", "-A", "-m", f"add {name}", cwd=work)


def test_pushes_refused_while_clones_and_pulls_go_on(
    stack: Stack, ro_people: None, read_only: Callable[[bool], None], tmp_path: Path
) -> None:
    git, hg = stack.clients.git, stack.clients.hg
    git_url = stack.url("rolf/frozen.git", "rolf", PASSWORD)
    hg_url = stack.url("rita/frozen", "rita", PASSWORD)
    git("clone", "-q", git_url, str(tmp_path / "g"))
    _git_commit(stack, tmp_path / "g", "before.txt", b"before\n")
    git("push", "-q", "origin", "HEAD:main", cwd=tmp_path / "g")
    hg("clone", hg_url, str(tmp_path / "h"))
    _hg_commit(stack, tmp_path / "h", "before.txt", b"before\n")
    hg("push", hg_url, cwd=tmp_path / "h")

    read_only(True)

    _git_commit(stack, tmp_path / "g", "during.txt", b"during\n")
    pushed = git("push", "origin", "HEAD:main", cwd=tmp_path / "g", check=False)
    assert pushed.returncode != 0
    assert f"remote: repository is {MESSAGE}" in pushed.stderr, pushed.stderr
    _hg_commit(stack, tmp_path / "h", "during.txt", b"during\n")
    pushed = hg("push", hg_url, cwd=tmp_path / "h", check=False)
    assert pushed.returncode != 0
    assert f"HTTP Error 503: repository is {MESSAGE}" in pushed.stderr + pushed.stdout, pushed.stderr

    # Reads go on: clones, pulls, and anonymous clones of public repositories.
    git("clone", "-q", git_url, str(tmp_path / "g2"))
    assert (tmp_path / "g2" / "before.txt").exists() and not (tmp_path / "g2" / "during.txt").exists()
    git("pull", "-q", "--ff-only", cwd=tmp_path / "g2")
    hg("clone", hg_url, str(tmp_path / "h2"))
    assert (tmp_path / "h2" / "before.txt").exists() and not (tmp_path / "h2" / "during.txt").exists()
    hg("pull", hg_url, cwd=tmp_path / "h2")
    git("clone", "-q", stack.url("demo/hello.git"), str(tmp_path / "public-git"))
    hg("clone", stack.url("demo/hello-hg"), str(tmp_path / "public-hg"))

    read_only(False)

    git("push", "-q", "origin", "HEAD:main", cwd=tmp_path / "g")
    hg("push", hg_url, cwd=tmp_path / "h")
    git("pull", "-q", "--ff-only", cwd=tmp_path / "g2")
    assert (tmp_path / "g2" / "during.txt").read_bytes() == b"during\n"
    hg("pull", "-u", hg_url, cwd=tmp_path / "h2")
    assert (tmp_path / "h2" / "during.txt").read_bytes() == b"during\n"


def test_large_pushes_see_the_message_too(
    stack: Stack, ro_people: None, read_only: Callable[[bool], None], tmp_path: Path
) -> None:
    """Bodies larger than what is drained before the refusal (git sends none; hg sends its bundle)."""
    git, hg = stack.clients.git, stack.clients.hg
    git_url = stack.url("rolf/frozen.git", "rolf", PASSWORD)
    hg_url = stack.url("rita/frozen", "rita", PASSWORD)
    git("clone", "-q", git_url, str(tmp_path / "g"))
    hg("clone", hg_url, str(tmp_path / "h"))
    read_only(True)
    _git_commit(stack, tmp_path / "g", "big.bin", os.urandom(2 * 1024 * 1024))
    pushed = git("push", "origin", "HEAD:main", cwd=tmp_path / "g", check=False, timeout=120)
    assert pushed.returncode != 0
    assert MESSAGE in pushed.stderr, pushed.stderr
    _hg_commit(stack, tmp_path / "h", "big.bin", os.urandom(2 * 1024 * 1024))
    pushed = hg("push", hg_url, cwd=tmp_path / "h", check=False, timeout=120)
    assert pushed.returncode != 0
    assert MESSAGE in pushed.stderr + pushed.stdout, pushed.stderr + pushed.stdout
