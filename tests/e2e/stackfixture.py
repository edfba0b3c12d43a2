"""A whole hostd stack on free loopback ports, and the real clients to drive it."""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

from hostd.ops import haproxy, stack
from hostd.settings import Settings
from tests import pg
from tests.polling import wait_until
from tests.ports import free_ports

VENV_BIN = Path(sys.executable).parent
PORT_NAMES = ("HTTPS", "HTTP", "STATS", "PEERS", "GIT", "HG", "WEB", "MEMCACHED", "SSH", "SSH_RELAY", "QUEUE")


@dataclass
class Clients:
    """git and hg configured to trust the stack's CA and never prompt."""

    home: Path
    ca: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".gitconfig").write_text(
            "[user]\n\tname = Test User\n\temail = test@example.com\n"
            f"[http]\n\tsslCAInfo = {self.ca}\n"
            "[init]\n\tdefaultBranch = main\n"
            "[credential]\n\thelper =\n"
        )
        (self.home / ".hgrc").write_text(
            f"[ui]\nusername = Test User <test@example.com>\ninteractive = false\n"
            f"[web]\ncacerts = {self.ca}\n"
        )
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HGRCPATH": str(self.home / ".hgrc"),
            "HGPLAIN": "1",
            "LANG": "C.UTF-8",
        }

    def run(self, *args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 300, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **(extra_env or {}))
        result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def git(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run("git", *args, **kwargs)  # type: ignore[arg-type]

    def hg(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(str(VENV_BIN / "hg"), *args, **kwargs)  # type: ignore[arg-type]


@dataclass
class Stack:
    """A running stack: its settings, admin CLI and URL helpers."""

    settings: Settings
    clients: Clients

    @property
    def base(self) -> str:
        return self.settings.base_url

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        host = f"{self.settings.bind}:{self.settings.ports.https}"
        auth = "" if user is None else f"{quote(user, safe='')}:{quote(password or '', safe='')}@"
        return f"https://{auth}{host}/{path.lstrip('/')}"

    def hostd(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        # As an operator of this stack would run it: with its data directory,
        # its queue and hook settings and, when it has one, its external database.
        env = dict(os.environ, **self.settings.background.environ())
        if self.settings.database_url is not None:
            env["HOSTD_DATABASE_URL"] = self.settings.database_url
        result = subprocess.run(
            [str(VENV_BIN / "hostd"), *args, "--data", str(self.settings.data_dir)],
            input=stdin, capture_output=True, text=True, timeout=60, env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"hostd {' '.join(args)} failed: {result.stderr}")
        return result

    def supervisorctl(self, *args: str, check: bool = False) -> str:
        """Run supervisorctl against this stack's supervisord; its output."""
        result = subprocess.run([str(VENV_BIN / "supervisorctl"), "-c", str(stack.SUPERVISORD_CONF), *args],
                                env=stack.environment(self.settings), capture_output=True, text=True, timeout=60,
                                check=check)
        return result.stdout.strip()

    def forget_failed_logins(self) -> None:
        """Reset both brute-force counters (singlemalt's in memcached, HAProxy's
        stick table): every client in these tests shares 127.0.0.1."""
        for node in self.settings.memcached:
            host, _, port = node.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as conn:
                conn.sendall(b"flush_all\r\n")
                assert conn.recv(64).startswith(b"OK")
        # Right after a reload the old HAProxy worker may still be handing
        # its table to the new one (peers): clear until no count comes back.
        for _ in range(50):
            haproxy.command(self.settings, "clear table https")
            time.sleep(0.1)
            if not re.search(r"\bgpc0=[1-9]", haproxy.command(self.settings, "show table https")):
                return
        raise AssertionError("HAProxy's failed-login table keeps refilling")

    def seed_git(self, repo: str, work: Path, files: dict[str, bytes]) -> str:
        """Create git repository ``repo`` (OWNER/NAME) holding one commit of
        ``files``, pushed straight into its directory; returns the commit."""
        self.hostd("repo", "create", repo, "--vcs", "git")
        git = self.clients.git
        git("init", "-q", str(work))
        for filename, content in files.items():
            (work / filename).write_bytes(content)
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", f"seed {repo}", cwd=work)
        git("push", "-q", str(self.settings.repo_root / f"{repo}.git"), "HEAD:refs/heads/main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).stdout.strip()

    def request(self, path: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        """Status and body of one GET over HTTPS through HAProxy, with Basic credentials if given."""
        context = ssl.create_default_context(cafile=str(self.settings.tls_dir / "ca.pem"))
        request = urllib.request.Request(self.url(path))
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def sql(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement on the stack's database, as an operator in psql would; its rows."""
        with psycopg.connect(self.settings.database, autocommit=True) as conn:
            cursor = conn.execute(query.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def add_user(self, name: str, password: str) -> None:
        self.hostd("user", "add", name, stdin=password + "\n")

    def pool_workers(self, pool: str = "git") -> list[int]:
        """PIDs of a pool's gunicorn workers (the children of its master)."""
        bind = f"{self.settings.bind}:{getattr(self.settings.ports, pool)}".encode()
        parents = {pid: parent for pid, args, parent in processes()
                   if bind in args and any(f"{pool}_app".encode() in arg for arg in args)}
        return [pid for pid, parent in parents.items() if parent in parents]

    def renew_workers(self, pool: str = "git") -> None:
        """Replace a pool's workers with new ones (gunicorn's HUP) and wait until the stack is healthy.

        What a worker holds in memory goes with it: its LRUs, and its
        memcached breakers (:class:`singlemalt.SafeMemcache`'s ``retry_interval``).
        """
        old = set(self.pool_workers(pool))
        self.supervisorctl("signal", "HUP", pool, check=True)

        def renewed() -> bool:
            now = set(self.pool_workers(pool))
            return len(now) == len(old) and not now & old

        wait_until(f"the {pool} pool's workers are all new", renewed, timeout=60)
        stack.wait_healthy(self.settings, timeout=60)


def processes() -> Iterator[tuple[int, list[bytes], int]]:
    """(pid, command line, parent pid) of every process that can be read now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        yield int(entry.name), args, parent


def start_stack(root: Path, **overrides: str) -> Stack:
    """Start a stack under ``root`` on free ports; the caller must stop it."""
    env = {f"HOSTD_{name}_PORT": str(port) for name, port in zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True)}
    env.update(HOSTD_DATA=str(root / "var"), HOSTD_WORKERS="2", HOSTD_THREADS="4", **pg.stack_environment())
    env.update(overrides)
    settings = Settings.from_env(env)
    pg.reachable(root)
    stack.start(settings)
    try:
        stack.wait_healthy(settings, timeout=60)
    except Exception:
        stack.stop(settings)
        raise
    return Stack(settings, Clients(root / "home", settings.tls_dir / "ca.pem"))


def stop_stack(running: Stack) -> None:
    stack.stop(running.settings)
