"""The real ``ssh`` client, driven by git and hg, against a stack's sshd."""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hostd.settings import Settings
from tests.e2e.stackfixture import Clients, Stack


@dataclass(frozen=True)
class Key:
    """A key pair made by ssh-keygen."""

    path: Path
    public: str

    @classmethod
    def generate(cls, directory: Path, kind: str = "ed25519") -> Key:
        path = directory / f"key-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", kind, "-C", "test", "-f", str(path)], check=True)
        return cls(path, (path.with_suffix(".pub")).read_text().strip())


def known_hosts(settings: Settings, path: Path, host: str | None = None, port: int | None = None) -> Path:
    """A known_hosts file with the stack's host keys, so ssh checks them strictly."""
    publics = sorted((settings.data_dir / "ssh").glob("ssh_host_*_key.pub"))
    return known_hosts_of(publics, path, host or settings.bind, port or settings.ports.ssh)


def known_hosts_of(publics: Iterable[Path], path: Path, host: str, port: int) -> Path:
    """A known_hosts file listing these public host key files for ``[host]:port``."""
    lines = []
    for public in publics:
        kind, blob = public.read_text().split()[:2]
        lines.append(f"[{host}]:{port} {kind} {blob}")
    path.write_text("\n".join(lines) + "\n")
    return path


class SshClients:
    """git and hg over SSH with one key (or none), host keys checked, never prompting."""

    def __init__(self, clients: Clients, hosts: Path, host: str, port: int, source: str | None = None) -> None:
        self.clients = clients
        self.hosts = hosts
        self.host = host
        self.port = port
        self.source = source

    def from_address(self, source: str) -> SshClients:
        """The same clients connecting from another loopback address (``BindAddress``): failed
        authentications are counted per client address, and every test shares 127.0.0.1."""
        return SshClients(self.clients, self.hosts, self.host, self.port, source)

    @classmethod
    def of(cls, stack: Stack) -> SshClients:
        hosts = known_hosts(stack.settings, stack.clients.home / f"known_hosts-{uuid.uuid4().hex[:6]}")
        return cls(stack.clients, hosts, stack.settings.bind, stack.settings.ports.ssh)

    def command(self, key: Key | None) -> str:
        args = ["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={self.hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR",
                "-p", str(self.port)]
        args += ["-o", f"BindAddress={self.source}"] if self.source else []
        args += ["-i", str(key.path)] if key is not None else ["-o", "PubkeyAuthentication=no"]
        return shlex.join(args)

    def git_url(self, repo: str) -> str:
        return f"ssh://git@{self.host}:{self.port}/{repo}.git"

    def hg_url(self, repo: str) -> str:
        return f"ssh://hg@{self.host}:{self.port}/{repo}"

    def git(self, key: Key | None, *args: str, cwd: Path | None = None, check: bool = True,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {"GIT_SSH_COMMAND": self.command(key), "GIT_SSH_VARIANT": "ssh", **(extra_env or {})}
        return self.clients.run("git", *args, cwd=cwd, check=check, extra_env=env)

    def hg(self, key: Key | None, *args: str, cwd: Path | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.clients.hg("--config", f"ui.ssh={self.command(key)}", *args, cwd=cwd, check=check)

    def ssh(self, key: Key | None, user: str, *remote: str, options: tuple[str, ...] = (),
            check: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [*shlex.split(self.command(key)), *options, f"{user}@{self.host}", *remote]
        return self.clients.run(*argv, check=check, timeout=60)


def add_key(stack: Stack, key: Key, *owner: str) -> int:
    """``hostd key add`` (``owner``: a user, or ``--repo OWNER/NAME [--write]``); the new key's id."""
    out = stack.hostd("key", "add", *owner, stdin=key.public + "\n").stdout
    found = re.search(r"^added (?:deploy )?key (\d+) ", out, re.MULTILINE)
    assert found is not None, out
    return int(found[1])


#: The SSH permission matrix (tests/e2e/test_ssh_matrix.py, and the lab's tests/cluster/sshcheck.py):
#: each caller's outcome of clone, pull, push by the repository's visibility.
ACTORS = ("no-key", "unknown-key", "removed-key", "stranger", "reader", "writer", "deploy-read", "deploy-write")
DENIED = ("denied", "denied", "denied")
EXPECTED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("public", "no-key"): DENIED,
    ("public", "unknown-key"): DENIED,
    ("public", "removed-key"): DENIED,
    ("public", "stranger"): ("ok", "ok", "read-only"),
    ("public", "reader"): ("ok", "ok", "read-only"),
    ("public", "writer"): ("ok", "ok", "ok"),
    ("public", "deploy-read"): ("ok", "ok", "deploy-read-only"),
    ("public", "deploy-write"): ("ok", "ok", "ok"),
    ("private", "no-key"): DENIED,
    ("private", "unknown-key"): DENIED,
    ("private", "removed-key"): DENIED,
    ("private", "stranger"): ("not-found", "not-found", "not-found"),
    ("private", "reader"): ("ok", "ok", "read-only"),
    ("private", "writer"): ("ok", "ok", "ok"),
    ("private", "deploy-read"): ("ok", "ok", "deploy-read-only"),
    ("private", "deploy-write"): ("ok", "ok", "ok"),
}


def outcome(returncode: int, output: str) -> str:
    """What a git or hg client's output says happened to a clone, pull or push over SSH."""
    if "Permission denied (publickey)" in output:
        return "denied"
    if "deploy key is read-only" in output:
        return "deploy-read-only"
    if "read-only access" in output:
        return "read-only"
    if "not found" in output:
        return "not-found"
    return "ok" if returncode == 0 else f"failed: {output.strip()[-300:]}"
