"""OpenSSH's sshd for one stack: its configuration, host keys, accounts and helper, made at each start.

sshd is Debian's own (``openssh-server``), run by supervisord as the stack's
``sshd`` program with a configuration written here into the run directory,
so nothing of the machine's own sshd is touched:

- **Accounts.** Clients log in as ``git`` or ``hg``. Both are given to sshd
  (and only to it) through ``nss_wrapper`` (``LD_PRELOAD``,
  ``libnss-wrapper``): a passwd file in the run directory where they have the
  uid of the stack's account, which owns the repositories, and
  ``hostd-ssh`` as their login shell. The machine's ``/etc/passwd`` is not
  changed. sshd must run as root to switch to them (and to run its
  pre-authentication privilege separation); a stack started by another
  user runs no sshd and says so.
- **Keys.** No ``authorized_keys`` file: ``AuthorizedKeysCommand`` runs
  ``hostd-ssh keys`` with the offered key's fingerprint and the client's
  address, which asks the gateway (one indexed query); the line it returns
  forces ``hostd-ssh`` with ``restrict``.
- **hostd-ssh** (``hostd/ssh/hostd-ssh.c``) is compiled here, once per
  version of its source, into :data:`HELPER_DIR`: sshd runs an
  ``AuthorizedKeysCommand`` only from a path where every directory is
  root's and not writable by others, which a checkout under ``/tmp`` is not.
- **Host keys** (ed25519, ECDSA, RSA) are generated on the first start into
  ``DATA/ssh`` and kept; :func:`fingerprints` prints them. Every load
  balancer of one site must have the same ones (copy the directory), or
  clients see a changed host key when they reach another.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Final

from hostd.ops.generated import write_atomically
from hostd.ops.haproxy import StackError
from hostd.settings import PROJECT_ROOT, Settings, SettingsError

SOURCE: Final = PROJECT_ROOT / "hostd" / "ssh" / "hostd-ssh.c"
#: The login names, one per VCS as in ``git@host:owner/name.git`` and ``ssh://hg@host/owner/name``.
ACCOUNTS: Final = ("git", "hg")
HOST_KEYS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("ed25519", ()), ("ecdsa", ("-b", "256")), ("rsa", ("-b", "3072")))


def available() -> str | None:
    """None when this stack can run sshd, else why not (one line)."""
    if os.geteuid() != 0:
        return "sshd needs root to switch to the git and hg accounts; SSH is not started"
    return None


#: Where ``hostd-ssh`` is installed: root's, like every directory above it.
HELPER_DIR: Final = Path("/usr/local/libexec/hostd")


def helper() -> Path:
    """The compiled ``hostd-ssh`` of this source."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return HELPER_DIR / f"hostd-ssh-{digest}"


def key_dir(settings: Settings) -> Path:
    return settings.data_dir / "ssh"


def supervisor_environment(settings: Settings) -> dict[str, str]:
    """What deploy/supervisord.conf's ``sshd`` and ``sshgate`` programs read."""
    run = settings.run_dir
    return {
        "HOSTD_SSHD": shutil.which("sshd", path="/usr/sbin:/sbin:/usr/bin") or "/usr/sbin/sshd",
        "HOSTD_SSHD_CONFIG": str(run / "sshd_config"),
        "HOSTD_SSH_PORT": str(settings.ports.ssh),
        "HOSTD_SSH_RELAY_PORT": str(settings.ports.ssh_relay),
        "HOSTD_NSS_WRAPPER": nss_wrapper() or "",
        "HOSTD_NSS_PASSWD": str(run / "ssh-passwd"),
        "HOSTD_NSS_GROUP": str(run / "ssh-group"),
    }


def prepare(settings: Settings) -> None:
    """Write everything sshd needs before supervisord starts it (host keys only the first time)."""
    if nss_wrapper() is None:
        raise StackError("libnss-wrapper is not installed (Debian: apt-get install libnss-wrapper)")
    binary = _build()
    _host_keys(settings)
    _accounts(settings, binary)
    # sshd's privilege separation chroots its pre-authentication child here (systemd's ssh unit makes it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    (settings.run_dir / "sshd.pid").unlink(missing_ok=True)  # a previous run's, which the health check would believe
    config = settings.run_dir / "sshd_config"
    config.write_text(render_config(settings, binary))
    check = subprocess.run([supervisor_environment(settings)["HOSTD_SSHD"], "-t", "-f", str(config)],
                           capture_output=True, text=True, env=_nss_env(settings))
    if check.returncode != 0:
        raise StackError(f"sshd refuses {config}: {check.stderr.strip()}")


def owner(settings: Settings) -> pwd.struct_passwd:
    """The account the ``git`` and ``hg`` logins become: the owner of the data directory (the repositories')."""
    return pwd.getpwuid(settings.data_dir.stat().st_uid)


def render_config(settings: Settings, binary: Path) -> str:
    """sshd_config: public keys only, through the gateway, with every forwarding off."""
    keys = "\n".join(f"HostKey {key_dir(settings)}/ssh_host_{kind}_key" for kind, _ in HOST_KEYS)
    socket = settings.ssh_socket
    user = owner(settings).pw_name
    return f"""\
# Written by hostd/ops/sshd.py at each start of the stack; change that module, not this file.
Port {settings.ports.ssh}
ListenAddress {settings.bind}
{keys}
PidFile {settings.run_dir}/sshd.pid
AllowUsers {' '.join(ACCOUNTS)}
# The accounts have the uid of the data directory's owner: root in a stack
# started by root, whose sessions can only ever run the forced command.
PermitRootLogin forced-commands-only
UsePAM no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
AuthorizedKeysFile none
AuthorizedKeysCommand {binary} keys {socket} %f
AuthorizedKeysCommandUser {user}
DisableForwarding yes
PermitTTY no
PermitTunnel no
PermitUserRC no
PermitUserEnvironment no
AcceptEnv GIT_PROTOCOL
SetEnv HOSTD_SSH_SOCKET={socket}
PrintMotd no
PrintLastLog no
UseDNS no
LoginGraceTime 20
MaxAuthTries 6
MaxSessions 1
MaxStartups 10:30:100
PerSourceMaxStartups 10
ClientAliveInterval 15
ClientAliveCountMax 4
LogLevel VERBOSE
"""


def fingerprints(settings: Settings) -> list[str]:
    """``ssh-keygen -l`` of each host key: what users compare on their first connection."""
    lines = []
    for kind, _ in HOST_KEYS:
        public = key_dir(settings) / f"ssh_host_{kind}_key.pub"
        if public.exists():
            out = subprocess.run(["ssh-keygen", "-l", "-f", str(public)], capture_output=True, text=True)
            lines.append(out.stdout.strip())
    return lines


def _build() -> Path:
    binary = helper()
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise StackError("building hostd-ssh needs a C compiler (Debian: apt-get install gcc libc6-dev)")
    binary.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    partial = binary.with_name(f".{binary.name}.{os.getpid()}")
    result = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"could not build hostd-ssh: {result.stderr.strip()}")
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


def _host_keys(settings: Settings) -> None:
    directory = key_dir(settings)
    directory.mkdir(mode=0o700, exist_ok=True)
    for kind, options in HOST_KEYS:
        key = directory / f"ssh_host_{kind}_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", kind, *options, "-C", "hostd", "-f", str(key)],
                           check=True)


def _accounts(settings: Settings, shell: Path) -> None:
    """The passwd and group files nss_wrapper gives sshd: the machine's, with ``git`` and ``hg`` first."""
    me = owner(settings)
    home = key_dir(settings)
    ours = [f"{name}:x:{me.pw_uid}:{me.pw_gid}:hostd {name}:{home}:{shell}" for name in ACCOUNTS]
    env = supervisor_environment(settings)
    for path, text in ((Path(env["HOSTD_NSS_PASSWD"]), passwd_text(ours, Path("/etc/passwd").read_text())),
                       (Path(env["HOSTD_NSS_GROUP"]), Path("/etc/group").read_text())):
        write_atomically(path, text)
        path.chmod(0o644)


def passwd_text(entries: list[str], system: str) -> str:
    """A passwd file of ``entries`` first, then the lines of ``system`` (``/etc/passwd``) with other names."""
    names = {entry.split(":", 1)[0] for entry in entries}
    others = [line for line in system.splitlines() if line and line.split(":", 1)[0] not in names]
    return "\n".join(entries + others) + "\n"


def nss_wrapper() -> str | None:
    """The ``libnss_wrapper.so`` to preload (Debian's ``libnss-wrapper``), or None."""
    found = sorted(glob.glob("/usr/lib/*/libnss_wrapper.so")) + sorted(glob.glob("/usr/lib/libnss_wrapper.so"))
    return found[0] if found else None


def _nss_env(settings: Settings) -> dict[str, str]:
    env = supervisor_environment(settings)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_PRELOAD": env["HOSTD_NSS_WRAPPER"],
            "NSS_WRAPPER_PASSWD": env["HOSTD_NSS_PASSWD"], "NSS_WRAPPER_GROUP": env["HOSTD_NSS_GROUP"]}


def health_problem(settings: Settings, *, sshd_runs: bool) -> str | None:
    """None when the gateway takes connections and (``sshd_runs``) sshd greets with its banner."""
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2)
            probe.connect(str(settings.ssh_socket))
    except OSError as error:
        return f"SSH gateway on {settings.ssh_socket}: {error}"
    if not sshd_runs:
        return None
    # The banner alone could be another sshd's on our port: ours is alive only if it could bind it.
    try:
        os.kill(int((settings.run_dir / "sshd.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return f"sshd is not running (is port {settings.ports.ssh} taken? see {settings.log_dir / 'sshd.log'})"
    try:
        with socket.create_connection((settings.bind, settings.ports.ssh), timeout=2) as probe:
            banner = probe.recv(64)
    except OSError as error:
        return f"sshd on port {settings.ports.ssh}: {error}"
    return None if banner.startswith(b"SSH-2.0-") else f"sshd on port {settings.ports.ssh} sent {banner[:20]!r}"


def main(argv: list[str]) -> int:
    """``python -m hostd.ops.sshd prepare``: what the systemd unit runs before sshd (a stack does it at start)."""
    if argv != ["prepare"]:
        print("usage: python -m hostd.ops.sshd prepare", file=sys.stderr)
        return 2
    try:
        prepare(Settings.from_env())
    except (StackError, SettingsError) as error:
        print(f"hostd: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
