"""What git, hg and curl need to trust this stack's certificate (``hostd trust``), decided once for all three.

A clone made with a CA option on its command line works once: hg keeps no such
option in the clone, and ``GIT_SSL_CAINFO`` (set on many CI images) replaces
git's ``http.sslCAInfo``, so later pulls and pushes fail. The stack's own CA
(:mod:`hostd.ops.tls`) is therefore trusted where every later command looks:

- **The system trust store**, as root with Debian's ``update-ca-certificates``:
  the CA goes to ``/usr/local/share/ca-certificates/hostd-<id>.crt`` (``<id>``
  names the data directory), so git, curl and Python find it in the system
  bundle, also when ``GIT_SSL_CAINFO`` names that bundle. A Mercurial that finds
  certifi (pip's) reads certifi's bundle instead, so a file in
  ``/etc/mercurial/hgrc.d/`` points hg at the system bundle for this host. Only a
  CA limited to this stack's names goes there: an older CA without name
  constraints would let whoever holds its key impersonate any site to every
  program on the machine.
- **Otherwise, this user's git and hg, for this server only**: git's
  ``http.<url>.sslCAPath``, a directory holding the CA (not ``sslCAInfo``:
  ``GIT_SSL_CAINFO`` replaces that, while curl reads a CA directory besides the
  file), and hg's ``[hostsecurity] <host>:verifycertsfile``. curl has no
  per-host setting: it is told ``--cacert``.

:func:`facts` looks, :func:`plan` decides (pure: the unit tests' table), and
:func:`apply` carries out a plan's ``install`` or ``remove``. :class:`Places`
says where; the tests give temporary directories.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hostd.ops import tls
from hostd.ops.truststeps import Action, Copy, Delete, HgBlock, Places, Run, TrustError, Write, apply, git_env
from hostd.settings import PROJECT_ROOT, Settings

__all__ = ["Facts", "Places", "Plan", "TrustError", "apply", "command", "facts", "hint", "plan"]

#: The name of the CA inside the directory git is given (``http.<url>.sslCAPath``).
CAPATH_NAME = "hostd-ca.pem"


@dataclass(frozen=True, slots=True)
class Facts:
    """What :func:`facts` found, for :func:`plan` to decide on."""

    #: Why a client with the system bundle refuses the served certificate; None: it accepts it.
    problem: str | None
    #: The stack serves its own CA's certificate (no ``HOSTD_TLS_CERT``).
    own_ca: bool
    #: That CA vouches for this stack's names alone (name constraints): fit for the system store.
    scoped: bool
    #: Root, with update-ca-certificates: the system store can be changed.
    root: bool
    #: This stack's CA and hg file are in the system's places.
    in_system: bool
    #: This user's git and hg are set up for this server, with the CA the stack has now.
    for_user: bool
    #: Something of ours is in this user's git or hg configuration (what ``--remove`` takes out).
    user_traces: bool
    #: Something of ours is in the system's places (what ``--remove`` takes out, as root).
    system_traces: bool = False
    #: ``openssl rehash`` can index the CA directory (OpenSSL's curl looks certificates up by hash).
    openssl: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`plan` decided: the lines that say it, and what ``--install`` and ``--remove`` do."""

    says: tuple[str, ...]
    install: tuple[Action, ...] = ()
    remove: tuple[Action, ...] = ()
    #: Clones need a step first (the announcement's hint); False: trusted already.
    needed: bool = False
    #: Why ``--install`` cannot help (a certificate hostd does not issue); None: it can, or need not.
    refusal: str | None = None
    #: What ``--install`` says once it has done it.
    done: str = ""


def name(settings: Settings) -> str:
    """``hostd-<id>``: this data directory's files in the system's places."""
    return "hostd-" + hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:12]


def ca_file(settings: Settings) -> Path:
    """The stack's own CA certificate, what clients are given to trust."""
    return tls.tls_files(settings.tls_dir).ca_cert


def capath(settings: Settings) -> Path:
    """The directory git is given for this server: the CA alone (and OpenSSL's hash link to it)."""
    return settings.tls_dir / "trusted"


def git_key(settings: Settings) -> str:
    """git's setting for this server's URL alone (``http.<url>.*`` applies to the URLs under it)."""
    return f"http.{settings.base_url}/.sslCAPath"


def hg_user_block(settings: Settings) -> str:
    """The lines ``--install`` adds to ``~/.hgrc`` and ``--remove`` takes out (hg matches the host, not the port)."""
    return (f"# hostd trust: {settings.base_url}/ (hostd trust --remove takes these lines out)\n"
            f"[hostsecurity]\n{settings.public_host}:verifycertsfile = {ca_file(settings)}\n")


def hg_system_text(settings: Settings, places: Places) -> str:
    """The system-wide hg file: this host's certificates are checked against the system bundle."""
    return (f"# hostd trust for {settings.data_dir}: hg checks {settings.base_url}/ against the system\n"
            "# bundle, which holds this stack's CA (a Mercurial that finds certifi reads certifi's otherwise).\n"
            f"[hostsecurity]\n{settings.public_host}:verifycertsfile = {places.system_bundle}\n")


def command(settings: Settings, *words: str) -> str:
    """``hostd WORDS...`` as a user types it: this installation's script, and ``--data`` unless it is the default."""
    script = Path(sys.executable).parent / "hostd"
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "hostd.cli"]
    if settings.data_dir != (PROJECT_ROOT / "var").resolve():
        argv += ["--data", str(settings.data_dir)]
    return shlex.join([*argv, *words])


def facts(settings: Settings, places: Places, *, root: bool | None = None) -> Facts:
    """Look at what this machine and this user trust; ``root`` overrides the check (tests)."""
    own = settings.tls_cert is None
    if root is None:
        root = os.geteuid() == 0 and _found(places.update[0])
    user = _user_state(settings, places) if own else (False, False)
    ours = [path.is_file() for path in _system_files(settings, places)]
    return Facts(
        # The bundle git and curl read (and GIT_SSL_CAINFO names); Python's default elsewhere.
        problem=tls.verify_problem(settings, places.system_bundle if places.system_bundle.is_file() else None),
        own_ca=own,
        scoped=own and tls.ca_is_scoped(ca_file(settings)),
        root=root,
        in_system=all(ours),
        for_user=user[0],
        user_traces=user[1],
        system_traces=any(ours),
        openssl=shutil.which("openssl") is not None,
    )


def _system_files(settings: Settings, places: Places) -> tuple[Path, Path]:
    """This stack's CA among the system's certificates, and its hg file."""
    return places.system_certs / f"{name(settings)}.crt", places.hg_system / f"{name(settings)}.rc"


def _found(program: str) -> bool:
    return (shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")) is not None


def _user_state(settings: Settings, places: Places) -> tuple[bool, bool]:
    """(set up with the current CA, anything of ours there) for this user's git and hg."""
    try:
        got = subprocess.run(["git", "config", "--global", "--get", git_key(settings)], env=git_env(places),
                             capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except OSError:
        got = ""
    try:
        hgrc = (places.home / ".hgrc").read_text()
    except OSError:
        hgrc = ""
    try:
        current = (capath(settings) / CAPATH_NAME).read_bytes() == ca_file(settings).read_bytes()
    except OSError:
        current = False
    git_set, hg_set = got == str(capath(settings)), hg_user_block(settings) in hgrc
    return git_set and hg_set and current, bool(got) or hg_set


def plan(settings: Settings, found: Facts, places: Places) -> Plan:
    """Decide, from ``found`` alone, what ``hostd trust`` says and what ``--install``/``--remove`` do."""
    url = settings.base_url + "/"
    remove = _removal(settings, found, places)
    if not found.own_ca:
        if found.problem is None:
            return Plan((f"Nothing to do: {url} presents HOSTD_TLS_CERT's certificate, which this machine's "
                         "trust store verifies (git, hg and curl trust it).",), remove=remove)
        refusal = (f"{url} presents HOSTD_TLS_CERT's certificate, which this machine's trust store does not "
                   f"verify ({found.problem}). hostd did not issue it: add the CA that did to the clients' trust "
                   "stores, or serve a certificate of a public CA.")
        return Plan((refusal,), remove=remove, needed=True, refusal=refusal)
    ca = ca_file(settings)
    if found.in_system and found.problem is None:
        return Plan((f"Nothing to do: this machine's trust store holds this stack's CA "
                     f"({places.system_certs / name(settings)}.crt); git, hg and curl trust {url}.",), remove=remove)
    if found.for_user:
        return Plan((f"Nothing to do: this user's git and hg trust {url} (hostd trust --install set them up).",
                     _curl(settings)), remove=remove)
    why = f"{url} presents a certificate of this stack's own CA ({ca}), which this machine does not trust yet"
    says = [f"{why} ({found.problem})." if found.problem else f"{why}."]
    if found.root and found.scoped:
        install = _system_install(settings, places)
        says.append("hostd trust --install puts the CA, which is limited to this stack's names, in the system "
                    f"trust store that git, hg and curl read (also with GIT_SSL_CAINFO={places.system_bundle}):")
        notes: tuple[str, ...] = ()
        done = f"Done: this machine's git, hg and curl trust {url} (hostd trust --remove takes it out again)."
    else:
        install = _user_install(settings, found, places)
        reason = ("the CA is not limited to this stack's names (an older hostd made it), so it stays out of the "
                  "system store" if found.root else "the system store needs root and update-ca-certificates")
        says.append(f"hostd trust --install sets up this user's git and hg, for {url} only ({reason}):")
        notes = ("git reads a CA directory (sslCAPath) besides its CA file, so GIT_SSL_CAINFO does not undo it.",
                 _curl(settings))
        done = (f"Done: this user's git and hg trust {url}; curl needs --cacert {ca} "
                "(hostd trust --remove takes it out again).")
    steps = tuple(f"  {line}" for action in install for line in action.lines())
    return Plan((*says, *steps, *notes, "hostd trust --remove takes it out again."),
                install=install, remove=remove, needed=True, done=done)


def _curl(settings: Settings) -> str:
    return ("curl reads no per-host setting (a cacert line in ~/.curlrc would replace its CA bundle for every "
            f"host): curl --cacert {ca_file(settings)} {settings.base_url}/...")


#: update-ca-certificates runs no hooks (Java's keystore): git, hg and curl read the bundle, and the tool
#: tells hooks of certificates it adds but never of a local one taken out, whose copy would outlive --remove.
NO_HOOKS = ("--hooksdir", "/dev/null")


def _system_install(settings: Settings, places: Places) -> tuple[Action, ...]:
    crt, rc = _system_files(settings, places)
    return (Copy(ca_file(settings), crt), Write(rc, hg_system_text(settings, places)), Run((*places.update, *NO_HOOKS)))


def _user_install(settings: Settings, found: Facts, places: Places) -> tuple[Action, ...]:
    directory = capath(settings)
    rehash: tuple[Action, ...] = (Run(("openssl", "rehash", str(directory))),) if found.openssl else ()
    return (Copy(ca_file(settings), directory / CAPATH_NAME), *rehash,
            Run(("git", "config", "--global", "--replace-all", git_key(settings), str(directory))),
            HgBlock(places.home / ".hgrc", hg_user_block(settings), add=True))


def _removal(settings: Settings, found: Facts, places: Places) -> tuple[Action, ...]:
    """What ``--remove`` takes out: ours in the system store (as root), ours in this user's configuration."""
    actions: list[Action] = []
    if found.system_traces and found.root:
        crt, rc = _system_files(settings, places)
        # --fresh: without it the tool keeps the links it made to a certificate that is gone.
        actions += [Delete(crt), Delete(rc, then_empty=(places.hg_system, places.hg_system.parent)),
                    Run((*places.update, "--fresh", *NO_HOOKS))]
    if found.user_traces:
        # Exit status 5: git had no such value to unset.
        actions += [Run(("git", "config", "--global", "--fixed-value", "--unset-all", git_key(settings),
                         str(capath(settings))), ok=(0, 5)),
                    HgBlock(places.home / ".hgrc", hg_user_block(settings), add=False),
                    Delete(capath(settings))]
    return tuple(actions)


def hint(settings: Settings, places: Places | None = None) -> str | None:
    """The command to run once before cloning, or None when this machine and user trust the stack already."""
    places = places or Places.default()
    try:
        decided = plan(settings, facts(settings, places), places)
    except (OSError, ValueError):  # an unreadable or broken certificate: hostd trust says which
        return command(settings, "trust")
    if not decided.needed:
        return None
    return command(settings, "trust") if decided.refusal else command(settings, "trust", "--install")
