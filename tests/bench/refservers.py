"""The reference servers the VCS benchmark compares against, started by the bench itself.

- git: ``git http-backend`` under fcgiwrap behind nginx (the Debian packages),
  once in plain HTTP and once with TLS and HTTP/2, like HAProxy in front of
  our pools;
- hg: ``hg serve`` (the venv's Mercurial, the same version our hg pool runs),
  one process per repository on loopback, behind the same nginx, plain and
  with TLS.

Our repositories are private, so the reference ones are too: nginx asks for
HTTP Basic credentials (``auth_basic``) on both of its ports and checks them
against an htpasswd file written here with ``{SSHA}`` entries (one salted
SHA-1 per request, nginx's cheapest hashed scheme), and passes the user on
to http-backend as ``REMOTE_USER``.  The clients then do the same work on
both sides: the same 401s, the same credential helper.

Everything listens on free 127.0.0.1 ports and runs in the foreground under
this process, which stops each server by its own PID.  nginx presents the
same certificate as our HAProxy, so one CA file serves every client.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.bench.common import BenchError
from tests.ports import free_ports

NGINX = "/usr/sbin/nginx"
FCGIWRAP = "/usr/sbin/fcgiwrap"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
HG = str(Path(sys.executable).parent / "hg")
#: Concurrent CGI processes, the same as our git pool's workers × threads.
FCGI_CHILDREN = 8
#: The realm of nginx's ``auth_basic`` challenge.
REALM = "reference"
#: The cipher list of haproxy/haproxy.cfg, so both TLS sides negotiate the same.
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


class Server:
    """A foreground server process this benchmark started; stopped by its PID only."""

    def __init__(self, name: str, command: Sequence[str], port: int, log: Path,
                 env: Mapping[str, str] | None = None, timeout: float = 20.0) -> None:
        self.name = name
        self.port = port
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            self.process = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=None if env is None else dict(env))
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = log.read_text(errors="replace")[-2000:]
                    raise BenchError(f"{name} did not listen on port {port}; {log}:\n{tail}") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(timeout=10)


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"fcgiwrap did not create {path}")
        time.sleep(0.02)


@dataclass(frozen=True, slots=True)
class NginxLayout:
    """Everything the nginx configuration names: ports, files, upstreams."""

    prefix: Path
    plain_port: int
    tls_port: int
    certificate: Path
    fcgi_socket: Path
    git_root: Path
    #: hg repository name -> port of its ``hg serve``; proxied at ``/NAME``.
    hg_ports: Mapping[str, int]
    #: The ``auth_basic_user_file`` (see :func:`htpasswd_line`).
    htpasswd: Path
    run_as_root: bool


def htpasswd_line(user: str, password: str, salt: bytes | None = None) -> str:
    """One htpasswd entry in nginx's ``{SSHA}`` scheme: base64(SHA-1(password + salt) + salt)."""
    salt = secrets.token_bytes(8) if salt is None else salt
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def _git_location(layout: NginxLayout) -> str:
    # GIT_PROTOCOL must come from the Git-Protocol header for protocol v2.
    # REMOTE_USER (the user nginx's auth_basic verified) is what makes
    # http-backend accept receive-pack: it refuses anonymous pushes.
    return f"""
        location ~ ^/git(/.*)$ {{
            client_max_body_size 0;
            fastcgi_pass unix:{layout.fcgi_socket};
            fastcgi_buffering off;
            fastcgi_read_timeout 1h;
            fastcgi_send_timeout 1h;
            fastcgi_param SCRIPT_FILENAME {GIT_HTTP_BACKEND};
            fastcgi_param GIT_PROJECT_ROOT {layout.git_root};
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param GIT_PROTOCOL $http_git_protocol;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param PATH_INFO $1;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
        }}"""


def _hg_locations(layout: NginxLayout) -> str:
    return "".join(f"""
        location /{name} {{
            client_max_body_size 0;
            proxy_pass http://127.0.0.1:{port};
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_set_header Host $host;
        }}""" for name, port in sorted(layout.hg_ports.items()))


def nginx_config(layout: NginxLayout) -> str:
    """nginx.conf: git http-backend and the hg proxies on both ports, all behind Basic auth."""
    prefix = layout.prefix
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# generated by tests/bench/refservers.py
{"user root root;" if layout.run_as_root else ""}
worker_processes auto;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
{temp}
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    large_client_header_buffers 8 64k;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS};
    ssl_session_tickets off;
    # Every location of both servers, as every repository of ours is private.
    auth_basic "{REALM}";
    auth_basic_user_file {layout.htpasswd};
    server {{
        listen 127.0.0.1:{layout.plain_port};{_git_location(layout)}{_hg_locations(layout)}
    }}
    server {{
        listen 127.0.0.1:{layout.tls_port} ssl http2;
        ssl_certificate {layout.certificate};
        ssl_certificate_key {layout.certificate};{_git_location(layout)}{_hg_locations(layout)}
    }}
}}
"""


def hg_serve_command(repository: Path, name: str, port: int, logs: Path) -> list[str]:
    """``hg serve`` for one repository at ``/NAME``, pushes allowed over plain HTTP."""
    return [HG, "serve", "-R", str(repository), "-a", "127.0.0.1", "-p", str(port), "--prefix", name,
            "-A", str(logs / f"hg-{name}-access.log"), "-E", str(logs / f"hg-{name}-error.log"),
            "--config", "web.push_ssl=false", "--config", "web.allow-push=*"]


class ReferenceServers:
    """fcgiwrap + nginx for git, one ``hg serve`` per hg repository; a context manager.

    ``users`` (name -> password) are the only credentials nginx accepts.
    """

    def __init__(self, root: Path, certificate: Path, hg_repositories: Mapping[str, Path],
                 users: Mapping[str, str]) -> None:
        self.root = root
        self.git_root = root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        prefix = root / "nginx"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        self.servers: list[Server] = []
        self.fcgiwrap: subprocess.Popen[bytes] | None = None
        try:
            ports = free_ports(2 + len(hg_repositories))
            self.hg_ports = dict(zip(sorted(hg_repositories), ports[2:], strict=True))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HGRCPATH": "", "LANG": "C.UTF-8"}
            for name, port in self.hg_ports.items():
                self.servers.append(Server(f"hg serve {name}", hg_serve_command(
                    hg_repositories[name], name, port, prefix), port, prefix / f"hg-{name}.out", env))
            socket_path = prefix / "fcgiwrap.sock"
            with (prefix / "fcgiwrap.log").open("ab") as log:
                # Its own process group: fcgiwrap's preforked children outlive a
                # TERM to their parent, so stop() signals the whole group.
                self.fcgiwrap = subprocess.Popen(
                    [FCGIWRAP, "-c", str(FCGI_CHILDREN), "-s", f"unix:{socket_path}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True)
            _wait_for_socket(socket_path, self.fcgiwrap)
            htpasswd = prefix / "htpasswd"
            htpasswd.touch(mode=0o600)
            htpasswd.write_text("".join(htpasswd_line(user, password) for user, password in sorted(users.items())))
            self.layout = NginxLayout(prefix=prefix, plain_port=ports[0], tls_port=ports[1],
                                      certificate=certificate, fcgi_socket=socket_path, git_root=self.git_root,
                                      hg_ports=self.hg_ports, htpasswd=htpasswd, run_as_root=os.geteuid() == 0)
            config = prefix / "nginx.conf"
            config.write_text(nginx_config(self.layout))
            self.servers.append(Server("nginx", [NGINX, "-p", str(prefix), "-c", str(config)],
                                       ports[1], prefix / "nginx.out"))
        except BaseException:
            self.stop()
            raise

    @property
    def nginx_pid(self) -> int:
        """nginx's master (its workers are its children)."""
        return next(server.pid for server in self.servers if server.name == "nginx")

    @property
    def fcgiwrap_pid(self) -> int:
        assert self.fcgiwrap is not None
        return self.fcgiwrap.pid

    def stop(self) -> None:
        """Stop nginx first (no new requests), then hg serve and fcgiwrap."""
        for server in reversed(self.servers):
            server.stop()
        if self.fcgiwrap is not None:
            group = self.fcgiwrap.pid  # the group this process created for fcgiwrap and its children
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self.fcgiwrap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                self.fcgiwrap.wait(timeout=10)

    def __enter__(self) -> ReferenceServers:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def versions() -> dict[str, str]:
    """The reference servers' versions, for the machine description."""
    found: dict[str, str] = {}
    for name, command in (("nginx", [NGINX, "-v"]), ("fcgiwrap", [FCGIWRAP, "-h"]), ("wrk", ["wrk", "-v"])):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except OSError:
            found[name] = "not installed"
            continue
        text = (result.stdout + result.stderr).strip()
        line = next((line for line in text.splitlines() if "version" in line or line.startswith("wrk")), text)
        found[name] = line.strip()
    return found
