"""The git pool against hostile or broken request bodies and killed workers, on the real stack.

- A gzip bomb sent as a fetch request through HAProxy gets a 413 with the
  reason, and the pool goes on serving.
- A push whose gunicorn worker is SIGKILLed mid-upload (the OOM killer,
  gunicorn's timeout, an operator) leaves no temporary pack for more than a
  few seconds: the master removes it when it reaps the worker, instead of
  ``hostd maintain`` a quarter of an hour later. The refs are unchanged and
  the retried push lands.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import signal
import ssl
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stackfixture import Stack, processes
from tests.polling import wait_until

PASSWORD = "hostile's long password"
MiB = 1 << 20
SLOW = 300.0  # seconds: generous for big transfers on a shared 2-core machine


@pytest.fixture(scope="module")
def user(stack: Stack) -> str:
    stack.forget_failed_logins()
    stack.add_user("hostile", PASSWORD)
    return "hostile"


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    path: Path


def _new_remote(stack: Stack, user: str) -> Remote:
    name = f"{user}/h{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", name, "--vcs", "git")
    return Remote(name, stack.url(f"{name}.git", user, PASSWORD), stack.settings.repo_root / f"{name}.git")


def _git(stack: Stack, *args: str, cwd: Path | None = None) -> str:
    return stack.clients.git(*args, cwd=cwd, timeout=SLOW).stdout.strip()


def _refs(stack: Stack, remote: Remote) -> dict[str, str]:
    lines = _git(stack, "ls-remote", remote.url).splitlines()
    return {ref: sha for sha, ref in (line.split("\t") for line in lines)}


def _temp_files(git_dir: Path) -> list[Path]:
    patterns = ("objects/tmp_pack_*", "objects/pack/tmp*", "objects/tmp_objdir-incoming-*",
                "hostd-pack-cache/.tmp-*")
    return sorted(path for pattern in patterns for path in git_dir.glob(pattern))


def _quarantined(git_dir: Path) -> int:
    """Bytes git's receive-pack has stored so far of a push in progress (in its quarantine)."""
    total = 0
    for path in git_dir.glob("objects/tmp_objdir-incoming-*/**/*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return total


def _pusher(pids: list[int], git_dir: Path) -> int | None:
    """Which of ``pids`` runs the git receive-pack writing into ``git_dir`` (as its parent)."""
    for _, args, parent in processes():
        if b"receive-pack" in args and os.fsencode(git_dir) in args and parent in pids:
            return parent
    return None


def _post(stack: Stack, user: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    connection = http.client.HTTPSConnection(stack.settings.bind, stack.settings.ports.https, context=context,
                                             timeout=60)
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    try:
        connection.request("POST", path, body=body, headers={"Authorization": f"Basic {token}", **headers})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_gzip_bomb_is_refused_with_a_reason(stack: Stack, user: str) -> None:
    remote = _new_remote(stack, user)
    have = _pkt(b"have " + b"1" * 40 + b"\n")
    bomb = gzip.compress(_pkt(b"want " + b"a" * 40 + b"\n") + b"0000" + have * (200 * MiB // len(have)))
    assert len(bomb) < MiB
    status, body = _post(stack, user, f"/{remote.name}.git/git-upload-pack", bomb, {
        "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip",
    })
    assert status == 413, body
    assert b"inflates more than" in body
    status, body = _post(stack, user, f"/{remote.name}.git/git-upload-pack", b"0000", {
        "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "br",
    })
    assert status == 415, body
    _git(stack, "ls-remote", remote.url)  # the pool is still serving


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def test_a_push_whose_worker_is_killed_leaves_nothing_behind(stack: Stack, user: str, tmp_path: Path) -> None:
    remote = _new_remote(stack, user)
    work = tmp_path / "work"
    _git(stack, "clone", "-q", remote.url, str(work))
    (work / "README").write_text("seed\n")
    _git(stack, "add", "README", cwd=work)
    _git(stack, "commit", "-q", "-m", "seed", cwd=work)
    _git(stack, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    seed = _git(stack, "rev-parse", "HEAD", cwd=work)
    for i in range(3):
        (work / f"part{i}.bin").write_bytes(os.urandom(20 * MiB))
    _git(stack, "add", ".", cwd=work)
    _git(stack, "commit", "-q", "-m", "big", cwd=work)
    head = _git(stack, "rev-parse", "HEAD", cwd=work)
    packs = sorted((remote.path / "objects" / "pack").iterdir())
    workers = stack.pool_workers()
    assert workers, "no git pool worker found under /proc"

    push = subprocess.Popen(
        ["git", "push", "-q", remote.url, "HEAD:refs/heads/main"], cwd=work, env=stack.clients.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    victim: list[int] = []
    try:
        def receiving() -> bool:
            """git has stored a good part of the push, and the worker feeding it is known."""
            pusher = _pusher(workers, remote.path) if _quarantined(remote.path) > 8 * MiB else None
            if pusher is not None:
                victim.append(pusher)
            return pusher is not None

        wait_until("a worker receiving the push", receiving, timeout=120, interval=0.05)
        os.kill(victim[0], signal.SIGKILL)
        push.wait(timeout=SLOW)  # the client sees the connection fail
    finally:
        if push.poll() is None:
            os.killpg(push.pid, signal.SIGKILL)
            push.wait(timeout=30)
    assert push.returncode != 0, "the push landed although its worker was killed"

    seconds = wait_until("no temporary file left", lambda: not _temp_files(remote.path), timeout=15, interval=0.1)
    print(f"quarantine gone {seconds:.1f}s after its worker was killed")
    assert _refs(stack, remote) == {"HEAD": seed, "refs/heads/main": seed}
    assert sorted((remote.path / "objects" / "pack").iterdir()) == packs

    _git(stack, "push", "-q", remote.url, "HEAD:refs/heads/main", cwd=work)
    assert _refs(stack, remote)["refs/heads/main"] == head
    assert _temp_files(remote.path) == []
