"""git and hg over SSH on a whole stack: protocols, refusals, keys, the throttle, and SSH standing alone.

The real ``ssh``, ``git`` and ``hg`` clients against the stack's own sshd
(Debian's OpenSSH), its key lookups and sessions handed to the gateway.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostd.ops import stack as stackops
from hostd.ops.bootstrap import DEMO_USER, ssh_clone_commands
from tests.e2e.sshclient import Key, SshClients, add_key
from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

PASSWORD = "ssh password 1"


@dataclass
class Alice:
    ssh: SshClients
    key: Key
    user: str
    git: str
    hg: str


@pytest.fixture(scope="module")
def alice(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Alice:
    user = f"alice{uuid.uuid4().hex[:6]}"
    stack.add_user(user, PASSWORD)
    key = Key.generate(tmp_path_factory.mktemp("alice-keys"))
    add_key(stack, key, user)
    for name, vcs in (("proj", "git"), ("hgproj", "hg")):
        stack.hostd("repo", "create", f"{user}/{name}", "--vcs", vcs)
    return Alice(SshClients.of(stack), key, user, f"{user}/proj", f"{user}/hgproj")


def _commit(alice: Alice, work: Path, vcs: str, name: str = "") -> None:
    (work / (name or f"{uuid.uuid4().hex[:8]}.txt")).write_text("change\n")
    if vcs == "git":
        alice.ssh.clients.git("add", ".", cwd=work)
        alice.ssh.clients.git("commit", "-q", "-m", "change", cwd=work)
    else:
        alice.ssh.clients.hg("commit", "-A", "-m", "change", cwd=work)


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_git_clone_fetch_and_push_in_each_protocol_version(alice: Alice, tmp_path: Path, version: str) -> None:
    config = ("-c", f"protocol.version={version}")
    work = tmp_path / "work"
    alice.ssh.git(alice.key, *config, "clone", "-q", alice.ssh.git_url(alice.git), str(work))
    _commit(alice, work, "git")
    alice.ssh.git(alice.key, *config, "push", "-q", "origin", "HEAD:main", cwd=work)
    traced = alice.ssh.git(alice.key, *config, "fetch", cwd=work, extra_env={"GIT_TRACE_PACKET": "1"})
    assert ("fetch< version 2" in traced.stderr) == (version == "2"), traced.stderr[-2000:]
    other = tmp_path / "other"
    alice.ssh.git(alice.key, *config, "clone", "-q", alice.ssh.git_url(alice.git), str(other))
    head = alice.ssh.clients.git("rev-parse", "HEAD", cwd=work).stdout
    assert alice.ssh.clients.git("rev-parse", "HEAD", cwd=other).stdout == head


def test_scp_like_urls_and_any_case_reach_the_repository(alice: Alice, tmp_path: Path) -> None:
    upper = alice.git.upper()
    alice.ssh.git(alice.key, "clone", "-q", f"git@{alice.ssh.host}:{upper}.git", str(tmp_path / "scp"))
    alice.ssh.git(alice.key, "clone", "-q", alice.ssh.git_url(upper), str(tmp_path / "upper"))


def test_hg_clone_pull_and_push_with_bookmarks(alice: Alice, tmp_path: Path) -> None:
    work, other = tmp_path / "work", tmp_path / "other"
    alice.ssh.hg(alice.key, "clone", alice.ssh.hg_url(alice.hg), str(work))
    alice.ssh.hg(alice.key, "clone", alice.ssh.hg_url(alice.hg), str(other))
    _commit(alice, work, "hg")
    alice.ssh.clients.hg("bookmark", "feature", cwd=work)
    alice.ssh.hg(alice.key, "push", "-B", "feature", cwd=work)
    alice.ssh.hg(alice.key, "pull", "-u", cwd=other)
    tip = alice.ssh.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=work).stdout
    assert alice.ssh.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=other).stdout == tip
    assert "feature" in alice.ssh.clients.hg("bookmarks", cwd=other).stdout


def test_pushes_are_in_the_push_log_as_their_pusher(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    for vcs, name in (("git", alice.git), ("hg", alice.hg)):
        work = tmp_path / vcs
        if vcs == "git":
            alice.ssh.git(alice.key, "clone", "-q", alice.ssh.git_url(name), str(work))
            _commit(alice, work, vcs)
            alice.ssh.git(alice.key, "push", "-q", "origin", "HEAD:main", cwd=work)
            new = alice.ssh.clients.git("rev-parse", "HEAD", cwd=work).stdout.strip()
        else:
            alice.ssh.hg(alice.key, "clone", alice.ssh.hg_url(name), str(work))
            _commit(alice, work, vcs)
            alice.ssh.hg(alice.key, "push", cwd=work)
            new = alice.ssh.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=work).stdout.strip()
        owner, repo = name.split("/")
        rows = stack.sql("SELECT username FROM pushlog WHERE owner = %s AND name = %s AND new = %s",
                         (owner, repo, new))
        assert rows == [(alice.user,)], (vcs, rows)


@pytest.mark.parametrize(("remote", "message"), [
    ((), "there is no shell access"),
    (("git-upload-pack 'x/y.git'; id",), "unexpected ';'"),
    (("rm -rf /",), "accepts only git-upload-pack, git-receive-pack and 'hg -R OWNER/NAME serve --stdio'"),
    (("git-upload-archive 'x/y.git'",), "accepts only"),
    (("hg -R x/y serve --stdio --debugger",), "accepts only"),
    (("git-upload-pack '../../etc/passwd'",), "not a repository path"),
    (("git-upload-pack 'nobody/nothing.git'",), "repository 'nobody/nothing.git' not found"),
])
def test_anything_else_gets_one_clear_line(stack: Stack, alice: Alice, remote: tuple[str, ...], message: str) -> None:
    result = alice.ssh.ssh(alice.key, "git", *remote)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"hostd: {result.stderr.strip()[len('hostd: '):]}"]
    assert message in result.stderr, result.stderr
    stack.forget_failed_logins()


def test_no_terminal_and_no_forwarding(alice: Alice) -> None:
    tty = alice.ssh.ssh(alice.key, "git", "git-upload-pack 'x/y.git'", options=("-tt",))
    assert "PTY allocation request failed" in tty.stderr, tty.stderr
    forward = alice.ssh.ssh(alice.key, "git", options=("-N", "-o", "ExitOnForwardFailure=yes",
                                                     "-R", "0:127.0.0.1:22"))
    assert forward.returncode != 0 and "forwarding failed" in forward.stderr, forward.stderr


def test_a_removed_key_stops_working_at_once(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    key = Key.generate(tmp_path)
    key_id = add_key(stack, key, alice.user)
    alice.ssh.git(key, "ls-remote", alice.ssh.git_url(alice.git))
    stack.hostd("key", "del", str(key_id))
    gone = alice.ssh.git(key, "ls-remote", alice.ssh.git_url(alice.git), check=False)
    assert gone.returncode != 0 and "Permission denied (publickey)" in gone.stderr


def test_read_only_mode_refuses_pushes_and_serves_clones(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    work = tmp_path / "work"
    alice.ssh.git(alice.key, "clone", "-q", alice.ssh.git_url(alice.git), str(work))
    _commit(alice, work, "git")
    stack.hostd("flag", "set", "read_only", "on")
    try:
        wait_until("read-only mode reaches the gateway", lambda: "read-only for maintenance" in alice.ssh.git(
            alice.key, "push", "-q", "origin", "HEAD:main", cwd=work, check=False).stderr, timeout=30)
        alice.ssh.git(alice.key, "clone", "-q", alice.ssh.git_url(alice.git), str(tmp_path / "clone"))
        hg = tmp_path / "hg"
        alice.ssh.hg(alice.key, "clone", alice.ssh.hg_url(alice.hg), str(hg))
        _commit(alice, hg, "hg")
        refused = alice.ssh.hg(alice.key, "push", cwd=hg, check=False)
        assert refused.returncode != 0 and "read-only for maintenance" in refused.stderr + refused.stdout
    finally:
        stack.hostd("flag", "set", "read_only", "off")


def test_refused_commands_lock_the_key_out_like_failed_logins(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    """Probing for private repositories is guessing: ten misses, and the pair is locked out."""
    stack.forget_failed_logins()
    try:
        for n in range(10):
            probe = alice.ssh.git(alice.key, "ls-remote", alice.ssh.git_url(f"secret/repo{n}"), check=False)
            assert "not found" in probe.stderr
        locked = alice.ssh.git(alice.key, "ls-remote", alice.ssh.git_url(alice.git), check=False)
        assert locked.returncode != 0 and "too many refused requests" in locked.stderr, locked.stderr
    finally:
        stack.forget_failed_logins()
    alice.ssh.git(alice.key, "ls-remote", alice.ssh.git_url(alice.git))


def test_failed_key_authentications_lock_the_address_out(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    """From an address of its own: the failures of its last connections are counted after the test."""
    guesser = alice.ssh.from_address("127.0.0.77")
    strangers = [Key.generate(tmp_path) for _ in range(5)]

    # One connection offers all five keys, as an agent would; each refused one is a failure.
    offering = guesser.command(strangers[0]) + "".join(f" -i {key.path}" for key in strangers[1:])

    def locked() -> bool:
        guesser.clients.run("git", "ls-remote", guesser.git_url(alice.git), check=False,
                            extra_env={"GIT_SSH_COMMAND": offering})
        # Failures are counted once a connection had no key accepted for a while (LoginGraceTime).
        return guesser.git(alice.key, "ls-remote", guesser.git_url(alice.git), check=False).returncode != 0

    wait_until("the address is locked out after many unknown keys", locked, timeout=120, interval=0.5)
    alice.ssh.git(alice.key, "ls-remote", alice.ssh.git_url(alice.git))  # from 127.0.0.1: not locked


@pytest.fixture
def pools_stopped(stack: Stack) -> Iterator[None]:
    stack.supervisorctl("stop", "git", "hg", "web", check=True)
    try:
        yield
    finally:
        stack.supervisorctl("start", "git", "hg", "web", check=True)
        stackops.wait_healthy(stack.settings, timeout=60)


def test_ssh_works_with_the_web_and_https_pools_stopped(alice: Alice, tmp_path: Path, pools_stopped: None) -> None:
    git, hg = tmp_path / "git", tmp_path / "hg"
    alice.ssh.git(alice.key, "clone", "-q", alice.ssh.git_url(alice.git), str(git))
    _commit(alice, git, "git")
    alice.ssh.git(alice.key, "push", "-q", "origin", "HEAD:main", cwd=git)
    alice.ssh.hg(alice.key, "clone", alice.ssh.hg_url(alice.hg), str(hg))
    _commit(alice, hg, "hg")
    alice.ssh.hg(alice.key, "push", cwd=hg)


def test_https_clones_go_on_while_sshd_is_flooded(stack: Stack, alice: Alice, tmp_path: Path) -> None:
    """200 connections that never authenticate: sshd is busy, the HTTPS service is not."""
    flood: list[socket.socket] = []
    try:
        for _ in range(200):
            try:
                flood.append(socket.create_connection((stack.settings.bind, stack.settings.ports.ssh), timeout=5))
            except OSError:
                break  # sshd's MaxStartups turns the rest away, which is its defence
        assert len(flood) >= 100
        for n in range(3):
            stack.clients.git("clone", "-q", stack.url(f"{alice.git}.git", alice.user, PASSWORD),
                              str(tmp_path / f"https{n}"), timeout=60)
    finally:
        for conn in flood:
            conn.close()


def test_printed_ssh_clone_commands_work_as_printed(stack: Stack, tmp_path: Path) -> None:
    """What ``make run`` prints, run as printed, by a user whose key is added and whose ssh knows the host.

    ssh reads ``~/.ssh`` from the account's home in the password database,
    not ``$HOME``, so this user's ssh is told where its key and known hosts
    are through ``GIT_SSH_COMMAND`` and hg's ``ui.ssh``, as a user's
    ``~/.ssh/config`` would."""
    key = Key.generate(tmp_path)
    key_id = add_key(stack, key, DEMO_USER)
    ssh = SshClients.of(stack).command(key)
    hgrc = tmp_path / "hgrc"
    hgrc.write_text(f"[ui]\nssh = {ssh}\n")
    env = dict(os.environ, HOME=str(tmp_path), GIT_TERMINAL_PROMPT="0", HGRCPATH=str(hgrc), GIT_SSH_COMMAND=ssh)
    env["PATH"] = f"{Path(stack.clients.env['PATH'].split(':')[0])}:{env.get('PATH', '/usr/bin:/bin')}"
    try:
        for command in ssh_clone_commands(stack.settings):
            result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, f"{command}\n{result.stderr}"
    finally:
        stack.hostd("key", "del", str(key_id))
    assert (tmp_path / "hello" / "README.md").exists()
    assert (tmp_path / "hello-hg" / "README.md").exists()
