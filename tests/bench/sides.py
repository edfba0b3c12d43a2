"""The sides of the comparison: where each keeps its repositories and how clients reach them.

A *host* owns storage (our stack's repository root, the reference servers'
directories, a plain directory for the local floor); a *side* is a host
reached one way (through TLS or plainly).  ``ours-tls`` and ``ours-pool``
share our stack's storage; ``ref-tls`` and ``ref-plain`` share the
reference servers'.  Both hosts require the same user and password, and
:func:`configure_credentials` gives each reference side the mechanism of
the matching side of ours, so clients do the same authentication work.

Repositories are copies of the cached inputs, never the inputs themselves
(see :func:`copy_git` for why a hard-linked git copy is one).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from tests.bench.refservers import ReferenceServers
from tests.bench.report import FLOOR, OURS_POOL, OURS_TLS, REF_PLAIN, REF_TLS
from tests.e2e.stackfixture import Clients, Stack

OWNER = "bench"
PASSWORD = "bench correct horse battery"


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP Basic for ``user``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def copy_git(source: Path, target: Path) -> None:
    """A private copy of a bare repository, hard-linked except its reflogs.

    git and dulwich never write a repository file in place: objects are
    immutable, refs, ``packed-refs`` and ``config`` are replaced by renaming
    a lock file over them, so a server writing to the copy gives it new
    inodes and the input keeps its own.  Reflogs are appended to, so
    ``logs/`` is copied.  ``cp -al`` links 20,000 loose refs in a fraction
    of a second where a copy takes many.
    """
    if target.exists():
        shutil.rmtree(target)
    if subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True).returncode != 0:
        shutil.rmtree(target, ignore_errors=True)  # another file system: copy instead
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)
        return
    if (source / "logs").exists():
        shutil.rmtree(target / "logs")
        subprocess.run(["cp", "-a", str(source / "logs"), str(target / "logs")], check=True)


def copy_hg(source: Path, target: Path) -> None:
    """A full copy of an hg repository (Mercurial appends to its revlogs in place)."""
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


class Host(Protocol):
    """Storage of one server under test, and its URLs."""

    def git_url(self, name: str, *, tls: bool) -> str: ...

    def hg_url(self, name: str, *, tls: bool) -> str: ...

    def git_dir(self, name: str) -> Path: ...

    def hg_dir(self, name: str) -> Path: ...

    def add_git(self, name: str, source: Path) -> Path: ...

    def add_hg(self, name: str, source: Path) -> Path: ...


@dataclass
class OursHost:
    """Our stack: repositories registered with ``hostd repo create`` (private), then replaced by a copy."""

    stack: Stack
    registered: set[str] = field(default_factory=set)

    @property
    def authorization(self) -> str:
        return basic_authorization(OWNER, PASSWORD)

    def origin(self, *, tls: bool, vcs: str) -> str:
        """``scheme://host:port`` of HAProxy (``tls``) or of the ``vcs`` pool."""
        settings = self.stack.settings
        if tls:
            return f"https://{settings.bind}:{settings.ports.https}"
        port = settings.ports.git if vcs == "git" else settings.ports.hg
        return f"http://{settings.bind}:{port}"

    def git_url(self, name: str, *, tls: bool) -> str:
        return f"{self.origin(tls=tls, vcs='git')}/{OWNER}/{name}.git"

    def hg_url(self, name: str, *, tls: bool) -> str:
        return f"{self.origin(tls=tls, vcs='hg')}/{OWNER}/{name}"

    def git_dir(self, name: str) -> Path:
        return self.stack.settings.repo_root / OWNER / f"{name}.git"

    def hg_dir(self, name: str) -> Path:
        return self.stack.settings.repo_root / OWNER / name

    def _register(self, name: str, vcs: str) -> None:
        if name not in self.registered:
            self.stack.hostd("repo", "create", f"{OWNER}/{name}", "--vcs", vcs)
            self.registered.add(name)

    def add_git(self, name: str, source: Path) -> Path:
        self._register(name, "git")
        copy_git(source, self.git_dir(name))
        return self.git_dir(name)

    def add_hg(self, name: str, source: Path) -> Path:
        self._register(name, "hg")
        copy_hg(source, self.hg_dir(name))
        return self.hg_dir(name)


@dataclass
class RefHost:
    """The reference servers: git repositories under http-backend's project root, hg ones per ``hg serve``.

    Both reached through nginx, which requires the same user and password as our stack.
    """

    servers: ReferenceServers
    hg_root: Path

    @property
    def authorization(self) -> str:
        return basic_authorization(OWNER, PASSWORD)

    def origin(self, *, tls: bool) -> str:
        """``scheme://host:port`` of nginx's TLS or plain server (git and hg alike)."""
        layout = self.servers.layout
        return f"https://127.0.0.1:{layout.tls_port}" if tls else f"http://127.0.0.1:{layout.plain_port}"

    def git_url(self, name: str, *, tls: bool) -> str:
        return f"{self.origin(tls=tls)}/git/{name}.git"

    def hg_url(self, name: str, *, tls: bool) -> str:
        return f"{self.origin(tls=tls)}/{name}"

    def git_dir(self, name: str) -> Path:
        return self.servers.git_root / f"{name}.git"

    def hg_dir(self, name: str) -> Path:
        return self.hg_root / name

    def add_git(self, name: str, source: Path) -> Path:
        copy_git(source, self.git_dir(name))
        return self.git_dir(name)

    def add_hg(self, name: str, source: Path) -> Path:
        # hg serve notices the replaced files (it compares their stat) and reopens.
        copy_hg(source, self.hg_dir(name))
        return self.hg_dir(name)


@dataclass
class FloorHost:
    """The local floor: plain directories, cloned with ``file://`` (git) or ``--pull`` (hg)."""

    root: Path

    def git_url(self, name: str, *, tls: bool) -> str:
        return self.git_dir(name).as_uri()

    def hg_url(self, name: str, *, tls: bool) -> str:
        return str(self.hg_dir(name))

    def git_dir(self, name: str) -> Path:
        return self.root / "git" / f"{name}.git"

    def hg_dir(self, name: str) -> Path:
        return self.root / "hg" / name

    def add_git(self, name: str, source: Path) -> Path:
        self.git_dir(name).parent.mkdir(parents=True, exist_ok=True)
        copy_git(source, self.git_dir(name))
        return self.git_dir(name)

    def add_hg(self, name: str, source: Path) -> Path:
        self.hg_dir(name).parent.mkdir(parents=True, exist_ok=True)
        copy_hg(source, self.hg_dir(name))
        return self.hg_dir(name)


@dataclass(frozen=True, slots=True)
class Side:
    """A host reached one way; ``authorization`` is what wrk and raw requests send."""

    key: str
    host: Host
    tls: bool
    authorization: str | None = None

    def git_url(self, name: str) -> str:
        return self.host.git_url(name, tls=self.tls)

    def hg_url(self, name: str) -> str:
        return self.host.hg_url(name, tls=self.tls)


def make_sides(ours: OursHost, ref: RefHost, floor: FloorHost) -> dict[str, Side]:
    return {
        OURS_TLS: Side(OURS_TLS, ours, True, ours.authorization),
        OURS_POOL: Side(OURS_POOL, ours, False, ours.authorization),
        REF_TLS: Side(REF_TLS, ref, True, ref.authorization),
        REF_PLAIN: Side(REF_PLAIN, ref, False, ref.authorization),
        FLOOR: Side(FLOOR, floor, False),
    }


@dataclass(frozen=True, slots=True)
class Origins:
    """Where clients authenticate, by mechanism; each list holds one origin of ours and one of the reference."""

    #: git through TLS: the ``store`` credential helper (a 401, then the stored password).
    git_store: tuple[str, ...]
    #: git in plain HTTP: Basic auth sent up front with ``http.<url>.extraHeader``.
    git_header: tuple[str, ...]
    #: hg, everywhere: ``[auth]`` (a 401, then the password).
    hg_auth: tuple[str, ...]


def origins(ours: OursHost, ref: RefHost) -> Origins:
    """The origins of :func:`client_config`: each reference side paired with the matching side of ours."""
    return Origins(
        git_store=(ours.origin(tls=True, vcs="git"), ref.origin(tls=True)),
        git_header=(ours.origin(tls=False, vcs="git"), ref.origin(tls=False)),
        hg_auth=(ours.origin(tls=True, vcs="hg"), ours.origin(tls=False, vcs="hg"),
                 ref.origin(tls=True), ref.origin(tls=False)))


def client_config(where: Origins, store: Path, user: str, password: str) -> tuple[str, str, str]:
    """(``.git-credentials``, what to add to ``.gitconfig``, what to add to ``.hgrc``) for ``user`` at ``where``.

    Through TLS, as a user would: git's ``store`` credential helper (git
    gets the 401, then retries with the stored password) and hg's ``[auth]``.
    In plain HTTP, git sends Basic auth up front with ``http.<url>.extraHeader``
    (no 401 round trip); hg cannot send a header, so it uses ``[auth]`` there
    too.  The ``[auth]`` prefixes end with ``/`` so one port is never taken
    for the prefix of another.
    """
    quoted = quote(password, safe="")
    credentials = "".join(origin.replace("://", f"://{quote(user, safe='')}:{quoted}@", 1) + "\n"
                          for origin in where.git_store)
    gitconfig = f"[credential]\n\thelper = store --file={store}\n" + "".join(
        f'[http "{origin}/"]\n\textraHeader = Authorization: {basic_authorization(user, password)}\n'
        for origin in where.git_header)
    hgrc = "[auth]\n" + "".join(
        f"s{number}.prefix = {origin}/\ns{number}.username = {user}\ns{number}.password = {password}\n"
        for number, origin in enumerate(where.hg_auth))
    return credentials, gitconfig, hgrc


def configure_credentials(clients: Clients, ours: OursHost, ref: RefHost) -> None:
    """How a user's clients authenticate, to our stack and the reference alike (see :func:`client_config`)."""
    store = clients.home / ".git-credentials"
    credentials, gitconfig, hgrc = client_config(origins(ours, ref), store, OWNER, PASSWORD)
    store.write_text(credentials)
    store.chmod(0o600)
    with (clients.home / ".gitconfig").open("a") as config:
        config.write(gitconfig)
    with (clients.home / ".hgrc").open("a") as config:
        config.write(hgrc)
