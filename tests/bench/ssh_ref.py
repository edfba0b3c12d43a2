"""The reference the SSH benchmark compares against: OpenSSH's sshd, ``git-shell`` and an ``authorized_keys`` file.

The classic way to serve git over SSH, with nothing of hostd in it: the
same ``/usr/sbin/sshd`` the stack runs, with a configuration of its own
written here (:func:`render_config`), its own host keys, on a free loopback
port, in the foreground (``-D -e``), started and stopped by this process by
its PID (:class:`tests.bench.refservers.Server`).  Usage::

    with ReferenceSshd(work / "ref", public_key, many=10_000) as ref:
        ref.add_git("medium", inputs / "flask.git")
        url = ref.git_url(ACCOUNT, "medium")   # git@127.0.0.1:bench/medium.git, with -p ref.port

- **Accounts.** ``git`` and ``git10k``, whose login shell is
  ``/usr/bin/git-shell`` (it runs ``git-upload-pack`` and
  ``git-receive-pack`` and nothing else) and whose home holds the
  repositories, so git-shell's ``bench/NAME.git`` is relative to it.  Like
  the stack's, they are given to sshd alone through ``nss_wrapper`` (a passwd
  file here, ``/etc/passwd`` untouched), and they have uid 0, the uid the
  stack's ``git`` account has when root starts it: both sides' git then run
  with the same privileges on repositories of the same owner, and nothing
  needs a ``chown``.  uid 0 needs ``PermitRootLogin yes``; git-shell is what
  confines the session, as on any git-shell host.
- **Keys.** A plain ``AuthorizedKeysFile`` per account: ``git``'s holds the
  benchmark's key alone, ``git10k``'s 10,000 other ed25519 keys and the
  benchmark's last, the worst place for a file sshd reads line by line
  (:func:`fake_key_lines`: random keys in the wire format, instead of
  minutes of ``ssh-keygen``).
- **The rest** of the configuration is the stack's (:func:`hostd.ops.sshd.render_config`):
  the same host key types, public keys only, no PAM, forwarding off,
  ``AcceptEnv GIT_PROTOCOL`` (protocol v2), verbose logging.
"""

from __future__ import annotations

import base64
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from hostd.ops import sshd
from hostd.ops.sshd import HOST_KEYS
from tests.bench.common import BenchError
from tests.bench.refservers import Server
from tests.bench.sides import OWNER, copy_git
from tests.e2e.sshclient import known_hosts_of
from tests.ports import free_ports

SSHD = "/usr/sbin/sshd"
GIT_SHELL = "/usr/bin/git-shell"
#: The login with the benchmark's key alone in its ``authorized_keys``, and the one with many keys before it.
ACCOUNT = "git"
MANY_ACCOUNT = "git10k"
ED25519 = "ssh-ed25519"


def ed25519_line(key: bytes, comment: str) -> str:
    """An ``authorized_keys`` line of a 32-byte ed25519 public key, in the SSH wire format (RFC 8709)."""
    if len(key) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    blob = len(ED25519).to_bytes(4, "big") + ED25519.encode() + len(key).to_bytes(4, "big") + key
    return f"{ED25519} {base64.b64encode(blob).decode()} {comment}"


def fake_key_lines(count: int, seed: int = 1) -> Iterator[str]:
    """``count`` well-formed ed25519 lines of random keys nobody holds (the same ones for a seed)."""
    rng = random.Random(seed)
    for number in range(count):
        yield ed25519_line(rng.randbytes(32), f"bench-fake-{number}")


def passwd_text(home: Path, system: str) -> str:
    """nss_wrapper's passwd: both accounts (uid 0, git-shell, ``home``) first, then the machine's own lines."""
    return sshd.passwd_text([f"{name}:x:0:0:reference {name}:{home}:{GIT_SHELL}" for name in (ACCOUNT, MANY_ACCOUNT)],
                            system)


def render_config(port: int, run: Path, host_keys: list[Path]) -> str:
    """sshd_config of the reference: the stack's, but for keys in a file per account and git-shell's login."""
    keys = "\n".join(f"HostKey {path}" for path in host_keys)
    return f"""\
# Written by tests/bench/ssh_ref.py: the reference OpenSSH of the SSH benchmark.
Port {port}
ListenAddress 127.0.0.1
{keys}
PidFile {run}/sshd.pid
AllowUsers {ACCOUNT} {MANY_ACCOUNT}
# Both accounts have uid 0, like the stack's git account when root starts it; git-shell confines them.
PermitRootLogin yes
UsePAM no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
StrictModes yes
AuthorizedKeysFile .ssh/authorized_keys-%u
DisableForwarding yes
PermitTTY no
PermitTunnel no
PermitUserRC no
PermitUserEnvironment no
AcceptEnv GIT_PROTOCOL
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


class ReferenceSshd:
    """OpenSSH with git-shell on a free port, serving copies of the inputs from its accounts' home; a context manager.

    ``public_key`` (an ``authorized_keys`` line) may log in as both accounts;
    ``many`` fake keys come before it in ``git10k``'s file.
    """

    def __init__(self, root: Path, public_key: str, *, many: int = 10_000) -> None:
        self.root = root
        self.home = root / "home"
        self.run_dir = root / "run"
        self.keys_dir = root / "hostkeys"
        for directory in (self.home, self.run_dir, self.keys_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o755)  # StrictModes: the home may not be writable by group or others
        dot_ssh = self.home / ".ssh"
        dot_ssh.mkdir(mode=0o700, exist_ok=True)
        self.authorized_keys = {ACCOUNT: dot_ssh / f"authorized_keys-{ACCOUNT}",
                                MANY_ACCOUNT: dot_ssh / f"authorized_keys-{MANY_ACCOUNT}"}
        self.authorized_keys[ACCOUNT].write_text(public_key.strip() + "\n")
        with self.authorized_keys[MANY_ACCOUNT].open("w") as many_keys:
            for line in fake_key_lines(many):
                many_keys.write(line + "\n")
            many_keys.write(public_key.strip() + "\n")
        self.many = many
        self.host_keys = [self.keys_dir / f"ssh_host_{kind}_key" for kind, _ in HOST_KEYS]
        for (kind, options), path in zip(HOST_KEYS, self.host_keys, strict=True):
            subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", kind, *options, "-C", "reference", "-f", str(path)],
                           check=True, capture_output=True)
        passwd, group = self.run_dir / "passwd", self.run_dir / "group"
        passwd.write_text(passwd_text(self.home, Path("/etc/passwd").read_text()))
        group.write_text(Path("/etc/group").read_text())
        self.port = free_ports(1)[0]
        self.config = self.run_dir / "sshd_config"
        self.config.write_text(render_config(self.port, self.run_dir, self.host_keys))
        # sshd's privilege separation chroots its pre-authentication child here.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        preload = sshd.nss_wrapper()
        if preload is None:
            raise BenchError("libnss-wrapper is not installed (Debian: apt-get install libnss-wrapper)")
        self.env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "LD_PRELOAD": preload,
                    "NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(group)}
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], env=self.env, capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"sshd refuses {self.config}: {check.stderr.strip()}")
        self.server = Server("reference sshd", [SSHD, "-D", "-e", "-f", str(self.config)], self.port,
                             self.run_dir / "sshd.log", self.env)

    @property
    def pid(self) -> int:
        return self.server.pid

    def known_hosts(self, path: Path) -> Path:
        """A known_hosts file with this server's host keys, for strict checking."""
        return known_hosts_of((key.with_suffix(".pub") for key in self.host_keys), path, "127.0.0.1", self.port)

    def git_dir(self, name: str) -> Path:
        return self.home / OWNER / f"{name}.git"

    def git_url(self, account: str, name: str) -> str:
        """scp-like: git-shell gets ``bench/NAME.git``, relative to the home (the port goes in the ssh command)."""
        return f"{account}@127.0.0.1:{OWNER}/{name}.git"

    def add_git(self, name: str, source: Path) -> Path:
        self.git_dir(name).parent.mkdir(exist_ok=True)
        copy_git(source, self.git_dir(name))
        return self.git_dir(name)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> ReferenceSshd:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
