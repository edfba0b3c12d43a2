"""Every kind of SSH caller × clone, pull, push × public and private, with git and hg, through sshd.

Each cell is driven with the real ``ssh``, ``git`` and ``hg`` clients against
the stack's own sshd; the outcome is read from what the client tells its
user, and a refused push leaves the repository as it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.sshclient import ACTORS, EXPECTED, Key, SshClients, add_key, outcome
from tests.e2e.stackfixture import Stack

#: Where the callers of the matrix connect from: their failed key authentications are counted
#: against this address, not 127.0.0.1, which every other test shares.
CALLERS = "127.0.0.78"


@dataclass
class World:
    ssh: SshClients
    owner: Key
    repos: dict[tuple[str, str], str]
    keys: dict[tuple[str, str, str], Key | None]

    def clients(self, key: Key | None) -> SshClients:
        """The owner's from 127.0.0.1, every caller's from :data:`CALLERS`."""
        return self.ssh if key is self.owner else self.ssh.from_address(CALLERS)


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("ssh-keys")
    suffix = uuid.uuid4().hex[:6]
    owner, stranger, reader, writer = (f"{role}{suffix}" for role in ("own", "str", "rea", "wri"))
    users: dict[str, Key] = {}
    for actor, user in (("owner", owner), ("stranger", stranger), ("reader", reader), ("writer", writer)):
        stack.add_user(user, "ssh matrix password")
        users[actor] = Key.generate(directory)
        add_key(stack, users[actor], user)
    removed = Key.generate(directory, "ecdsa")
    stack.hostd("key", "del", str(add_key(stack, removed, writer)))
    repos: dict[tuple[str, str], str] = {}
    keys: dict[tuple[str, str, str], Key | None] = {}
    for vcs in ("git", "hg"):
        for visibility in ("public", "private"):
            name = f"{owner}/ssh-{vcs}-{visibility}"
            stack.hostd("repo", "create", name, "--vcs", vcs, *(["--public"] if visibility == "public" else []))
            stack.hostd("grant", reader, name, "read")
            stack.hostd("grant", writer, name, "write")
            repos[vcs, visibility] = name
            deploy_read, deploy_write = Key.generate(directory), Key.generate(directory, "rsa")
            add_key(stack, deploy_read, "--repo", name)
            add_key(stack, deploy_write, "--repo", name, "--write")
            cell = {"no-key": None, "unknown-key": Key.generate(directory), "removed-key": removed,
                    "deploy-read": deploy_read, "deploy-write": deploy_write,
                    **{actor: users[actor] for actor in ("stranger", "reader", "writer")}}
            for actor, key in cell.items():
                keys[vcs, visibility, actor] = key
    world = World(SshClients.of(stack), users["owner"], repos, keys)
    for (vcs, _), name in repos.items():
        _commit_and_push(world, vcs, name, world.owner, stack.clients.home.parent / f"seed-{uuid.uuid4().hex[:8]}")
    return world


def _clone(world: World, vcs: str, name: str, key: Key | None, work: Path, check: bool = True) -> str:
    ssh = world.clients(key)
    if vcs == "git":
        result = ssh.git(key, "clone", "-q", ssh.git_url(name), str(work), check=check)
    else:
        result = ssh.hg(key, "clone", ssh.hg_url(name), str(work), check=check)
    return outcome(result.returncode, result.stderr + result.stdout)


def _commit_and_push(world: World, vcs: str, name: str, key: Key | None, work: Path) -> str:
    """A fresh clone (as the owner), one new commit, pushed with ``key``."""
    _clone(world, vcs, name, world.owner, work)
    (work / f"{uuid.uuid4().hex[:8]}.txt").write_text("change\n")
    ssh = world.clients(key)
    if vcs == "git":
        ssh.clients.git("add", ".", cwd=work)
        ssh.clients.git("commit", "-q", "-m", "change", cwd=work)
        result = ssh.git(key, "push", "-q", "origin", "HEAD:main", cwd=work, check=False)
    else:
        ssh.clients.hg("commit", "-A", "-m", "change", cwd=work)
        result = ssh.hg(key, "push", cwd=work, check=False)
    return outcome(result.returncode, result.stderr + result.stdout)


def _pull(world: World, vcs: str, name: str, key: Key | None, work: Path) -> str:
    _clone(world, vcs, name, world.owner, work)
    ssh = world.clients(key)
    result = (ssh.git(key, "pull", "-q", cwd=work, check=False) if vcs == "git"
              else ssh.hg(key, "pull", cwd=work, check=False))
    return outcome(result.returncode, result.stderr + result.stdout)


def _tip(world: World, vcs: str, name: str, work: Path) -> str:
    _clone(world, vcs, name, world.owner, work)
    if vcs == "git":
        return world.ssh.clients.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    return world.ssh.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=work).stdout.strip()


@pytest.mark.parametrize("vcs", ["git", "hg"])
@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("actor", ACTORS)
def test_ssh_permission_matrix(stack: Stack, world: World, tmp_path: Path, vcs: str, visibility: str,
                               actor: str) -> None:
    name = world.repos[vcs, visibility]
    key = world.keys[vcs, visibility, actor]
    before = _tip(world, vcs, name, tmp_path / "before")
    clone = _clone(world, vcs, name, key, tmp_path / "clone", check=False)
    pull = _pull(world, vcs, name, key, tmp_path / "pull")
    push = _commit_and_push(world, vcs, name, key, tmp_path / "push")
    assert (clone, pull, push) == EXPECTED[visibility, actor]
    after = _tip(world, vcs, name, tmp_path / "after")
    assert (after != before) == (push == "ok"), "a refused push changed the repository, or a push did not land"
    stack.forget_failed_logins()
