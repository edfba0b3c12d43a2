"""Every kind of caller × clone, pull, push × public and private, with git and hg.

Each cell is driven with the real client through HAProxy and singlemalt, and
the outcome is read from what the client tells its user.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from singlemalt import parse_token
from tests.e2e.stackfixture import Stack

PASSWORD = "matrix password 1"
ACTORS = ("anonymous", "stranger", "reader", "writer", "token-read", "token-write", "token-revoked", "token-expired")
OPERATIONS = ("clone", "pull", "push")

# Expected outcome of each (visibility, actor) for clone, pull and push.
EXPECTED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("public", "anonymous"): ("ok", "ok", "401"),
    ("public", "stranger"): ("ok", "ok", "403"),
    ("public", "reader"): ("ok", "ok", "403"),
    ("public", "writer"): ("ok", "ok", "ok"),
    ("public", "token-read"): ("ok", "ok", "403"),
    ("public", "token-write"): ("ok", "ok", "ok"),
    # Clients send credentials only when challenged, and a public repository
    # does not challenge reads: a dead token is never shown for those.
    ("public", "token-revoked"): ("ok", "ok", "401"),
    ("public", "token-expired"): ("ok", "ok", "401"),
    ("private", "anonymous"): ("401", "401", "401"),
    ("private", "stranger"): ("404", "404", "404"),
    ("private", "reader"): ("ok", "ok", "403"),
    ("private", "writer"): ("ok", "ok", "ok"),
    ("private", "token-read"): ("ok", "ok", "403"),
    ("private", "token-write"): ("ok", "ok", "ok"),
    ("private", "token-revoked"): ("401", "401", "401"),
    ("private", "token-expired"): ("401", "401", "401"),
}


@dataclass
class World:
    credentials: dict[str, tuple[str, str] | None]
    repos: dict[tuple[str, str], str]


def _token(stack: Stack, user: str, scope: str) -> str:
    return stack.hostd("token", "create", user, "--scope", scope).stdout.splitlines()[-1]


def _token_id(token: str) -> str:
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0]


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    suffix = uuid.uuid4().hex[:6]
    owner, stranger, reader, writer = (f"{role}{suffix}" for role in ("own", "str", "rea", "wri"))
    for user in (owner, stranger, reader, writer):
        stack.add_user(user, PASSWORD)
    repos = {}
    for vcs in ("git", "hg"):
        for visibility in ("public", "private"):
            name = f"{owner}/{vcs}-{visibility}"
            extra = ["--public"] if visibility == "public" else []
            stack.hostd("repo", "create", name, "--vcs", vcs, *extra)
            stack.hostd("grant", reader, name, "read")
            stack.hostd("grant", writer, name, "write")
            repos[vcs, visibility] = name
    revoked = _token(stack, writer, "write")
    stack.hostd("token", "revoke", _token_id(revoked))
    expired = _token(stack, writer, "write")
    stack.sql("UPDATE tokens SET expires_at = %s WHERE id = %s", (time.time() - 60, _token_id(expired)))
    credentials: dict[str, tuple[str, str] | None] = {
        "anonymous": None,
        "stranger": (stranger, PASSWORD),
        "reader": (reader, PASSWORD),
        "writer": (writer, PASSWORD),
        "token-read": (writer, _token(stack, writer, "read")),
        "token-write": (writer, _token(stack, writer, "write")),
        "token-revoked": (writer, revoked),
        "token-expired": (writer, expired),
        "owner": (owner, PASSWORD),
    }
    world = World(credentials, repos)
    for (vcs, _), name in repos.items():
        _seed(stack, world, vcs, name)
    return world


def _url(stack: Stack, world: World, vcs: str, name: str, actor: str) -> str:
    path = f"{name}.git" if vcs == "git" else name
    creds = world.credentials[actor]
    return stack.url(path) if creds is None else stack.url(path, *creds)


def _seed(stack: Stack, world: World, vcs: str, name: str) -> None:
    """One commit from the owner, so clones and pulls have something to fetch."""
    work = stack.clients.home.parent / f"seed-{uuid.uuid4().hex[:8]}"
    url = _url(stack, world, vcs, name, "owner")
    if vcs == "git":
        stack.clients.git("clone", "-q", url, str(work))
        (work / "seed.txt").write_text("seed\n")
        stack.clients.git("add", ".", cwd=work)
        stack.clients.git("commit", "-q", "-m", "seed", cwd=work)
        stack.clients.git("push", "-q", "origin", "HEAD:main", cwd=work)
    else:
        stack.clients.hg("clone", url, str(work))
        (work / "seed.txt").write_text("seed\n")
        stack.clients.hg("commit", "-A", "-m", "seed", cwd=work)
        stack.clients.hg("push", url, cwd=work)


def _outcome(returncode: int, output: str) -> str:
    if returncode == 0:
        return "ok"
    lowered = output.lower()
    for status, signs in (
        ("401", ("authentication failed", "could not read username", "authorization required",
                 "authorization failed")),
        ("403", ("403", "read-only", "forbidden")),
        ("404", ("404", "not found")),
    ):
        if any(sign in lowered for sign in signs):
            return status
    return "unexpected: " + output[-500:]


def _attempt(stack: Stack, world: World, vcs: str, name: str, actor: str, operation: str, tmp: Path) -> str:
    url = _url(stack, world, vcs, name, actor)
    owner_url = _url(stack, world, vcs, name, "owner")
    work = tmp / "work"
    if vcs == "git":
        git = stack.clients.git
        if operation == "clone":
            result = git("clone", "-q", url, str(work), check=False)
        else:
            git("clone", "-q", owner_url, str(work))
            git("remote", "set-url", "origin", url, cwd=work)
            if operation == "pull":
                result = git("pull", "-q", "origin", "main", cwd=work, check=False)
            else:
                (work / f"{actor}.txt").write_text(actor)
                git("add", ".", cwd=work)
                git("commit", "-q", "-m", actor, cwd=work)
                result = git("push", "origin", "HEAD:main", cwd=work, check=False)
    else:
        hg = stack.clients.hg
        if operation == "clone":
            result = hg("clone", url, str(work), check=False)
        else:
            hg("clone", owner_url, str(work))
            if operation == "pull":
                result = hg("pull", url, cwd=work, check=False)
            else:
                (work / f"{actor}.txt").write_text(actor)
                hg("commit", "-A", "-m", actor, cwd=work)
                result = hg("push", url, cwd=work, check=False)
    return _outcome(result.returncode, result.stdout + result.stderr)


CELLS = [
    (vcs, visibility, actor, operation, EXPECTED[visibility, actor][OPERATIONS.index(operation)])
    for vcs in ("git", "hg")
    for visibility in ("public", "private")
    for actor in ACTORS
    for operation in OPERATIONS
]


@pytest.mark.parametrize(
    ("vcs", "visibility", "actor", "operation", "expected"),
    CELLS,
    ids=[f"{v}-{vis}-{a}-{o}" for v, vis, a, o, _ in CELLS],
)
def test_permission_matrix(
    stack: Stack, world: World, tmp_path: Path, vcs: str, visibility: str, actor: str, operation: str, expected: str
) -> None:
    name = world.repos[vcs, visibility]
    stack.forget_failed_logins()
    assert _attempt(stack, world, vcs, name, actor, operation, tmp_path) == expected
