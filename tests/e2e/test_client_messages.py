"""What git and hg show their users when the stack cannot serve them, through the real stack.

git on a Mercurial repository and hg on a git one: HAProxy sends the request
to the pool of the client's protocol, which does not serve the other kind;
for a public repository the client shows which client to use
(hostd/guard/wrongvcs.py), for a private one exactly what it shows for a name
that does not exist. A pool with no server left serving (``hostd pool drain
--force``): HAProxy's 503 says which pool and to retry (haproxy/haproxy.cfg),
in the body git prints and the reason phrase hg prints.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack

PASSWORD = "wrong vcs password"


@pytest.fixture(scope="module")
def private(stack: Stack) -> dict[str, str]:
    """A private repository of each kind, which wanda may read; by kind."""
    suffix = uuid.uuid4().hex[:8]
    stack.add_user(f"wanda{suffix}", PASSWORD)
    names = {"git": f"wanda{suffix}/code", "hg": f"wanda{suffix}/notes"}
    for vcs, name in names.items():
        stack.hostd("repo", "create", name, "--vcs", vcs)
    return names


def _clone(stack: Stack, client: str, url: str, dest: Path) -> subprocess.CompletedProcess[str]:
    run = stack.clients.git if client == "git" else stack.clients.hg
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = ("clone", "-q", url, str(dest)) if client == "git" else ("clone", url, str(dest))
    result = run(*args, check=False, timeout=60)
    assert result.returncode != 0 and not dest.exists()
    return result


def test_git_on_a_public_mercurial_repository_is_told_to_use_hg(stack: Stack, tmp_path: Path) -> None:
    result = _clone(stack, "git", stack.url("demo/hello-hg"), tmp_path / "c")
    assert f"remote: demo/hello-hg is a Mercurial repository: hg clone {stack.base}/demo/hello-hg\n" in result.stderr
    assert "Username" not in result.stderr  # no password prompt first


@pytest.mark.parametrize("path", ["demo/hello", "demo/hello.git"])
def test_hg_on_a_public_git_repository_is_told_to_use_git(stack: Stack, tmp_path: Path, path: str) -> None:
    result = _clone(stack, "hg", stack.url(path), tmp_path / "c")
    assert (f"abort: HTTP Error 404: demo/hello is a git repository: git clone {stack.base}/demo/hello.git\n"
            in result.stderr)


@pytest.mark.parametrize("client", ["git", "hg"])
def test_a_private_repository_of_the_other_kind_looks_missing(
        stack: Stack, private: dict[str, str], tmp_path: Path, client: str) -> None:
    """Anonymous, and signed in with read access: the same output, word for word, as for no repository."""
    name = private["hg" if client == "git" else "git"]
    owner = name.split("/")[0]
    missing = f"{owner}/nothing"
    for user in (None, owner):
        password = PASSWORD if user else None
        seen = _clone(stack, client, stack.url(name, user, password), tmp_path / "a" / "c")
        expected = _clone(stack, client, stack.url(missing, user, password), tmp_path / "b" / "c")
        assert seen.stderr.replace(name, missing).replace(str(tmp_path / "a"), str(tmp_path / "b")) \
            == expected.stderr, user
        assert "repository:" not in seen.stderr


@pytest.mark.parametrize("client", ["git", "hg"])
def test_a_pool_with_no_server_serving_tells_the_client_why(stack: Stack, tmp_path: Path, client: str) -> None:
    refused = stack.hostd("pool", "drain", client, f"{client}1", check=False)
    assert refused.returncode == 1 and "--force drains it anyway" in refused.stderr
    stack.hostd("pool", "drain", client, f"{client}1", "--force")
    try:
        path = "demo/hello.git" if client == "git" else "demo/hello-hg"
        result = _clone(stack, client, stack.url(path), tmp_path / "c")
    finally:
        stack.hostd("pool", "ready", client, f"{client}1")
    reason = f"The {client} pool is unavailable (no worker can take the request now); retry in a few seconds."
    shown = f"remote: {reason}\n" if client == "git" else f"abort: HTTP Error 503: {reason}\n"
    assert shown in result.stderr
