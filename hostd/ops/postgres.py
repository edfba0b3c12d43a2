"""The stack's own PostgreSQL cluster: created in the data directory, reachable on a unix socket only.

When ``HOSTD_DATABASE_URL`` is unset, ``make run``/``make up`` run a
PostgreSQL of their own under supervisord (``deploy/supervisord.conf``,
program ``postgres``):

- :func:`ensure_cluster` runs ``initdb`` into ``<data>/postgres`` once, with
  the role and database hostd uses, and writes its settings: no TCP at all
  (``listen_addresses = ''``), the socket in the cluster's own 0700
  directory, and ``peer`` authentication mapped to the one operating-system
  user that runs hostd. Nobody else on the host can reach it.
- PostgreSQL refuses to run as root. Run as root, the cluster belongs to
  the ``postgres`` user (Debian's package creates it), and the data
  directory is opened to that user's group for traversal only (0710).
- :func:`temporary_server` starts the cluster for a moment, to migrate the
  schema before supervisord starts anything that needs it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hostd.ops.haproxy import StackError
from hostd.settings import DATABASE_NAME, DATABASE_ROLE, Settings

#: Where Debian (and the PGDG packages) install the server binaries, one directory per major version.
SERVER_DIRS = Path("/usr/lib/postgresql")
#: The operating-system user the cluster runs as when hostd runs as root.
ROOT_RUNS_AS = "postgres"


@dataclass(frozen=True, slots=True)
class Server:
    """The PostgreSQL binaries and the operating-system user that runs the cluster."""

    bin_dir: Path
    user: str

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def server() -> Server:
    """The newest installed PostgreSQL server; :class:`StackError` if there is none."""
    candidates = sorted(SERVER_DIRS.glob("*/bin/postgres"), key=lambda p: _version(p.parent.parent.name))
    found = candidates[-1].parent if candidates else None
    if found is None:
        on_path = shutil.which("postgres")
        found = Path(on_path).parent if on_path else None
    if found is None:
        raise StackError("PostgreSQL is not installed (Debian: apt-get install postgresql), "
                         "or set HOSTD_DATABASE_URL to an existing one")
    user = ROOT_RUNS_AS if os.geteuid() == 0 else getpass.getuser()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise StackError(f"running as root, PostgreSQL needs the {user!r} user; "
                             "install Debian's postgresql package, or run hostd as another user") from None
    return Server(found, user)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def as_user(srv: Server, command: list[str]) -> list[str]:
    """``command`` run as the cluster's user (through ``runuser`` when hostd runs as root)."""
    if os.geteuid() == 0 and srv.user != "root":
        return ["runuser", "-u", srv.user, "--", *command]
    return command


def ensure_cluster(settings: Settings) -> bool:
    """Create the stack's cluster if it does not exist; whether it was created."""
    cluster = settings.postgres_dir
    srv = server()
    if os.geteuid() == 0:
        # The postgres user must reach <data>/postgres, and nothing else there.
        os.chown(settings.data_dir, 0, pwd.getpwnam(srv.user).pw_gid)
        os.chmod(settings.data_dir, 0o710)
        _check_reachable(settings.data_dir.parent, srv.user)
    if (cluster / "PG_VERSION").exists():
        return False
    if cluster.exists():  # a previous initdb that did not finish
        shutil.rmtree(cluster)
    cluster.mkdir(mode=0o700)
    if os.geteuid() == 0:
        account = pwd.getpwnam(srv.user)
        os.chown(cluster, account.pw_uid, account.pw_gid)
    _run([*as_user(srv, [srv.tool("initdb"), "-D", str(cluster), "-U", DATABASE_ROLE,
                          "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8"])],
         "initdb")
    hostd_user = getpass.getuser()
    _append(srv, cluster / "pg_ident.conf", f"hostd {hostd_user} {DATABASE_ROLE}\nhostd {srv.user} {DATABASE_ROLE}\n")
    _append(srv, cluster / "postgresql.conf", (
        "\n# hostd: a unix socket in this 0700 directory, never TCP.\n"
        "listen_addresses = ''\n"
        f"unix_socket_directories = '{cluster}'\n"
        "unix_socket_permissions = 0700\n"
        "max_connections = 200\n"
        "shared_preload_libraries = 'pg_stat_statements'\n"
        "log_line_prefix = '%m [%p] '\n"
    ))
    # Only the operating-system user that runs hostd, as the hostd role; no TCP.
    _write(srv, cluster / "pg_hba.conf", "local all all peer map=hostd\n")
    with temporary_server(settings):
        _run(as_user(srv, [srv.tool("createdb"), "-h", str(cluster), "-U", DATABASE_ROLE,
                            "-O", DATABASE_ROLE, DATABASE_NAME]), "createdb")
    return True


def _check_reachable(directory: Path, user: str) -> None:
    """StackError unless ``user`` may pass through ``directory`` and every directory above it."""
    account = pwd.getpwnam(user)
    for place in [directory, *directory.parents]:
        mode = place.stat()
        if mode.st_uid == account.pw_uid:
            ok = bool(mode.st_mode & 0o100)
        elif mode.st_gid == account.pw_gid:
            ok = bool(mode.st_mode & 0o010)
        else:
            ok = bool(mode.st_mode & 0o001)
        if not ok:
            raise StackError(f"PostgreSQL runs as {user!r}, which cannot pass through {place}: "
                             f"put the data directory elsewhere, or chmod o+x {place}")


def _append(srv: Server, path: Path, text: str) -> None:
    _write(srv, path, path.read_text() + text)


def _write(srv: Server, path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        account = pwd.getpwnam(srv.user)
        os.chown(path, account.pw_uid, account.pw_gid)


def running(settings: Settings) -> bool:
    """Whether the stack's cluster is accepting connections now."""
    srv = server()
    result = subprocess.run([srv.tool("pg_isready"), "-q", "-h", str(settings.postgres_dir)],
                            capture_output=True, check=False)
    return result.returncode == 0


@contextmanager
def temporary_server(settings: Settings) -> Iterator[None]:
    """The stack's cluster running for the duration of the block (left alone if it already runs)."""
    if running(settings):
        yield
        return
    srv = server()
    cluster = str(settings.postgres_dir)
    # Inside the cluster's own directory: the only place its user may write.
    log_file = settings.postgres_dir / "setup.log"
    _run(as_user(srv, [srv.tool("pg_ctl"), "-D", cluster, "-l", str(log_file), "-w", "-t", "60", "start"]),
         "pg_ctl start")
    try:
        yield
    finally:
        _run(as_user(srv, [srv.tool("pg_ctl"), "-D", cluster, "-m", "fast", "-w", "stop"]), "pg_ctl stop")


def supervisor_environment(settings: Settings) -> dict[str, str]:
    """What deploy/supervisord.conf needs to run the cluster (whether it starts: ``Settings.runs``)."""
    if not settings.runs("postgres"):
        # An external database, or another host's: the program exists but never starts.
        return {"HOSTD_POSTGRES": "/bin/false", "HOSTD_POSTGRES_USER": getpass.getuser()}
    srv = server()
    return {"HOSTD_POSTGRES": srv.tool("postgres"), "HOSTD_POSTGRES_USER": srv.user}


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise StackError(f"{what} failed (exit {result.returncode}): {output}")
