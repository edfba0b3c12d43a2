"""Partial clone (``git clone --filter``) with the real git client, over HTTPS through HAProxy.

The clone leaves objects on the server (it is a promisor of them) and a
later ``git checkout`` or ``git log -p`` fetches the ones it needs by id,
in protocol v2 (git's default) and v0. Filters git upload-pack is told to
refuse, and specs it cannot parse, are clean errors, never a 500.
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack

PASSWORD = "partial clone password"
USER = "petra"
REPO = f"{USER}/partial"
PROTOCOLS = ["2", "0"]
FILES = {"README": b"top\n", "src/deep/code.py": b"print('deep')\n", "src/util.py": b"util = 1\n"}


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository of two commits with nested directories; returns its head."""
    stack.add_user(USER, PASSWORD)
    work = tmp_path_factory.mktemp("partial-seed")
    stack.seed_git(REPO, work, {"README": b"first\n"})
    for name, content in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
    git = stack.clients.git
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    git("push", "-q", str(stack.settings.repo_root / f"{REPO}.git"), "HEAD:refs/heads/main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def _missing(stack: Stack, clone: Path) -> set[str]:
    listed = stack.clients.git("rev-list", "--objects", "--missing=print", "--all", cwd=clone).stdout
    return {line[1:] for line in listed.splitlines() if line.startswith("?")}


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda v: f"v{v}")
@pytest.mark.parametrize("spec", ["blob:none", "tree:0"])
def test_partial_clone_then_checkout_fetches_what_is_missing(stack: Stack, seeded: str, tmp_path: Path,
                                                              spec: str, protocol: str) -> None:
    git = stack.clients.git
    version = ("-c", f"protocol.version={protocol}")
    clone = tmp_path / "partial"
    result = git(*version, "clone", "-q", "--no-checkout", f"--filter={spec}",
                 stack.url(f"{REPO}.git", USER, PASSWORD), str(clone))
    assert "filtering not recognized" not in result.stderr
    assert git("config", "remote.origin.promisor", cwd=clone).stdout.strip() == "true"
    assert git("config", "remote.origin.partialclonefilter", cwd=clone).stdout.strip() == spec
    missing = _missing(stack, clone)
    root_tree = git("log", "-1", "--format=%T", "main", cwd=clone).stdout.strip()
    if spec == "tree:0":
        assert root_tree in missing  # no tree came (reading one now would fetch it)
    else:
        assert root_tree not in missing
        assert git("rev-parse", "main:src/deep/code.py", cwd=clone).stdout.strip() in missing

    git(*version, "checkout", "-q", "main", cwd=clone)  # fetches what the work tree needs
    for name, content in FILES.items():
        assert (clone / name).read_bytes() == content
    patches = git(*version, "log", "-p", "--format=%H", cwd=clone).stdout  # and the first commit's blobs
    assert seeded in patches and "+first" in patches


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda v: f"v{v}")
@pytest.mark.parametrize(("spec", "words"), [
    ("sparse:oid=main:README", "filter 'sparse:oid' not supported"),
    ("tree:1", "tree filter allows max depth 0, but got 1"),
])
def test_a_refused_filter_is_gits_own_error(stack: Stack, seeded: str, tmp_path: Path, spec: str, words: str,
                                            protocol: str) -> None:
    result = stack.clients.git("-c", f"protocol.version={protocol}", "clone", "-q", f"--filter={spec}",
                               stack.url(f"{REPO}.git", USER, PASSWORD), str(tmp_path / "refused"), check=False)
    assert result.returncode != 0
    assert words in result.stderr
    assert "500" not in result.stderr and "RPC failed" not in result.stderr


def _post(stack: Stack, body: bytes, protocol: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    request = urllib.request.Request(stack.url(f"{REPO}.git/git-upload-pack"), data=body, method="POST")
    request.add_header("Content-Type", "application/x-git-upload-pack-request")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    if protocol:
        request.add_header("Git-Protocol", protocol)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


@pytest.mark.parametrize("protocol", ["version=2", ""], ids=["v2", "v0"])
def test_a_filter_spec_git_cannot_parse_is_a_400(stack: Stack, seeded: str, protocol: str) -> None:
    want = _pkt(b"want %s%s\n" % (seeded.encode(), b"" if protocol else b" side-band-64k filter"))
    garbage = _pkt(b"filter no:such~filter\n")
    if protocol:
        body = _pkt(b"command=fetch\n") + b"0001" + want + garbage + _pkt(b"done\n") + b"0000"
    else:
        body = want + garbage + b"0000" + _pkt(b"done\n")
    status, answer = _post(stack, body, protocol)
    assert status == 400, answer
    assert b"not understood" in answer


def test_where_dulwich_builds_packs_a_filter_is_ignored_and_the_clone_is_whole(
        dulwich_pack_stack: Stack, tmp_path: Path) -> None:
    """HOSTD_GIT_PACK=dulwich (or no git installed) does not filter: git says so and gets everything."""
    stack = dulwich_pack_stack
    stack.add_user(USER, PASSWORD)
    stack.seed_git(REPO, tmp_path / "seed", {"README": b"whole\n"})
    clone = tmp_path / "clone"
    result = stack.clients.git("clone", "-q", "--filter=blob:none", stack.url(f"{REPO}.git", USER, PASSWORD),
                               str(clone))
    assert "filtering not recognized by server" in result.stderr
    assert _missing(stack, clone) == set()
    assert (clone / "README").read_bytes() == b"whole\n"
