"""``make cluster-check``'s SSH check: git and hg over SSH through both load balancers, relayed to the shards.

The load balancers hold no repositories: their gateway decides a session
and relays it to the gateway of a host of the repository's shard
(:mod:`hostd.ssh.relay`). Run from the root namespace (the bridge's
address, like every client of the check), with the real ``ssh``, ``git``
and ``hg`` of :mod:`tests.e2e.sshclient`, host keys checked strictly:

- both load balancers present the same host keys (the lab copies one set,
  as a real site does), and sshd answers on the balancers only, the relay
  on the storage hosts only (``HOSTD_ROLES``);
- the permission matrix of tests/e2e/test_ssh_matrix.py (its actors, its
  expected outcomes, its reading of what the client says) for a git and an
  hg repository, public and private, spread over two shards (the load
  balancers' home shard among them): every cell through lb1, and
  :data:`LB2_ACTORS` through lb2, whose host keys are checked against lb1's.
  A cell is right when clone, pull and push end as expected and the
  repository on its shard changed exactly when the push was accepted;
- a relayed session may be silent for longer than the relay's connect
  timeout, and the shard's log names the client, not the load balancer
  that relayed it.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.e2e.sshclient import ACTORS, EXPECTED, Key, SshClients, known_hosts, outcome
from tests.e2e.stackfixture import Clients
from tests.polling import wait_until

from .lab import BALANCERS, HOME_SHARD, HOSTS, MEMCACHED_PORT, PORTS, SHARDS, STACK_HOSTS, Lab, LabError

PASSWORD = "lab ssh password"
VISIBILITIES = ("public", "private")
#: Where each repository lives: each kind and each visibility on two shards, the home shard among them.
PLACEMENT = {("git", "public"): SHARDS[0], ("git", "private"): SHARDS[1],
             ("hg", "public"): SHARDS[1], ("hg", "private"): SHARDS[0]}
#: The smaller set through the second load balancer.
LB2_ACTORS = ("reader", "writer", "deploy-read")
_SERVED = re.compile(r"ssh served user='(?P<user>[^']*)' client=(?P<client>\S*) repository='(?P<repo>[^']*)' "
                     r"service=(?P<service>\S+) status=(?P<status>\d+) .* reason='(?P<reason>[^']*)'")


@dataclass
class World:
    """The check's users, keys and repositories, and a client per load balancer."""

    lab: Lab
    clients: Clients
    ssh: dict[str, SshClients]
    users: dict[str, str]
    owner: Key
    repos: dict[tuple[str, str], str]
    keys: dict[tuple[str, str, str], Key | None]
    work: Path

    def scratch(self, tag: str) -> Path:
        return self.work / f"{tag}-{uuid.uuid4().hex[:8]}"


def _add_key(lab: Lab, key: Key, *owner: str) -> int:
    """``hostd key add`` (``owner``: a user, or ``--repo OWNER/NAME [--write]``); the new key's id."""
    out = lab.hostd(HOME_SHARD, "key", "add", *owner, input=key.public + "\n").stdout
    added = re.search(r"^added (?:deploy )?key (\d+) ", out, re.MULTILINE)
    if added is None:
        raise LabError(f"hostd key add said {out.strip()!r}")
    return int(added[1])


def set_up(lab: Lab, work: Path) -> World:
    """Users with keys, a removed and an unknown key, the repositories with deploy keys, seeded by their owner."""
    keydir = work / "keys"
    keydir.mkdir(parents=True)
    suffix = uuid.uuid4().hex[:6]
    users = {actor: f"{actor[:3]}{suffix}" for actor in ("owner", "stranger", "reader", "writer")}
    keys: dict[str, Key] = {}
    for actor, user in users.items():
        lab.hostd(HOME_SHARD, "user", "add", user, input=f"{PASSWORD}\n{PASSWORD}\n")
        keys[actor] = Key.generate(keydir)
        _add_key(lab, keys[actor], user)
    removed = Key.generate(keydir, "ecdsa")
    lab.hostd(HOME_SHARD, "key", "del", str(_add_key(lab, removed, users["writer"])))
    unknown = Key.generate(keydir)
    clients = Clients(work / "home", lab.ca_file)
    ssh = {}
    for balancer in BALANCERS:
        # Every balancer is checked against the first one's host keys: a user
        # who reaches the other must not see a changed host key.
        hosts = known_hosts(lab.settings(BALANCERS[0]), work / f"known_hosts-{balancer}",
                            lab.address(balancer), PORTS.ssh)
        ssh[balancer] = SshClients(clients, hosts, lab.address(balancer), PORTS.ssh)
    repos: dict[tuple[str, str], str] = {}
    cells: dict[tuple[str, str, str], Key | None] = {}
    for (vcs, visibility), shard in PLACEMENT.items():
        name = f"{users['owner']}/ssh-{vcs}-{visibility}"
        lab.hostd(shard, "repo", "create", name, "--vcs", vcs, "--shard", shard,
                  *(["--public"] if visibility == "public" else []))
        lab.hostd(HOME_SHARD, "grant", users["reader"], name, "read")
        lab.hostd(HOME_SHARD, "grant", users["writer"], name, "write")
        repos[vcs, visibility] = name
        deploy_read, deploy_write = Key.generate(keydir), Key.generate(keydir, "rsa")
        _add_key(lab, deploy_read, "--repo", name)
        _add_key(lab, deploy_write, "--repo", name, "--write")
        actors: dict[str, Key | None] = {
            "no-key": None, "unknown-key": unknown, "removed-key": removed, "deploy-read": deploy_read,
            "deploy-write": deploy_write, **{actor: keys[actor] for actor in ("stranger", "reader", "writer")}}
        for actor, key in actors.items():
            cells[vcs, visibility, actor] = key
    return World(lab, clients, ssh, users, keys["owner"], repos, cells, work)


# --- one cell ---------------------------------------------------------------------
def _clone(world: World, balancer: str, vcs: str, name: str, key: Key | None,
           target: Path) -> subprocess.CompletedProcess[str]:
    ssh = world.ssh[balancer]
    if vcs == "git":
        return ssh.git(key, "clone", "-q", ssh.git_url(name), str(target), check=False)
    return ssh.hg(key, "clone", "-q", ssh.hg_url(name), str(target), check=False)


def _push(world: World, balancer: str, vcs: str, key: Key | None, work: Path) -> subprocess.CompletedProcess[str]:
    """One new commit in ``work`` (a clone), pushed with ``key``."""
    (work / f"{uuid.uuid4().hex[:8]}.txt").write_text("change\n")
    ssh = world.ssh[balancer]
    if vcs == "git":
        world.clients.git("add", ".", cwd=work)
        world.clients.git("commit", "-q", "-m", "change", cwd=work)
        return ssh.git(key, "push", "-q", "origin", "HEAD:main", cwd=work, check=False)
    world.clients.hg("commit", "-q", "-A", "-m", "change", cwd=work)
    return ssh.hg(key, "push", cwd=work, check=False)


def _said(result: subprocess.CompletedProcess[str]) -> str:
    """The cell's outcome as tests/e2e/test_ssh_matrix.py reads it; a failure by its last line."""
    said = outcome(result.returncode, result.stderr + result.stdout)
    return "failed: " + _last_line(said) if said.startswith("failed:") else said


def _last_line(text: str) -> str:
    """What a client's output says went wrong: its first ``hostd:``, ``fatal:`` or ``abort:`` line, else its last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if re.match(r"(remote: )?(hostd|fatal|abort|error):", line)]
    return (telling or lines or [""])[0 if telling else -1][-160:]


def _state(world: World, vcs: str, visibility: str) -> str:
    """The repository as its shard holds it (the lab's hosts share one filesystem): every ref, or hg's tip."""
    name = world.repos[vcs, visibility]
    root = world.lab.settings(PLACEMENT[vcs, visibility]).repo_root
    if vcs == "git":
        return world.clients.git("-C", str(root / f"{name}.git"), "for-each-ref",
                                 "--format=%(objectname) %(refname)").stdout
    return world.clients.hg("-R", str(root / name), "log", "-r", "tip", "-T", "{rev}:{node}").stdout


def seed(world: World) -> list[str]:
    """A first commit in every repository, pushed by its owner through lb1; what failed."""
    failed = []
    for (vcs, visibility), name in world.repos.items():
        work = world.scratch("seed")
        result = _clone(world, BALANCERS[0], vcs, name, world.owner, work)
        if result.returncode == 0:
            result = _push(world, BALANCERS[0], vcs, world.owner, work)
        if result.returncode != 0:
            failed.append(f"{name} on {PLACEMENT[vcs, visibility]}: {_last_line(result.stderr)}")
    return failed


def cell(world: World, balancer: str, vcs: str, visibility: str, actor: str) -> str | None:
    """Clone, pull and push as ``actor`` through ``balancer``; None when as expected, else what was wrong."""
    name = world.repos[vcs, visibility]
    key = world.keys[vcs, visibility, actor]
    before = _state(world, vcs, visibility)
    clone = _said(_clone(world, balancer, vcs, name, key, world.scratch("clone")))
    work = world.scratch("work")
    owners = _clone(world, balancer, vcs, name, world.owner, work)
    if owners.returncode != 0:
        pull = push = f"failed: the owner's clone: {_last_line(owners.stderr)}"
    else:
        ssh = world.ssh[balancer]
        pull = _said(ssh.git(key, "pull", "-q", cwd=work, check=False) if vcs == "git"
                     else ssh.hg(key, "pull", "-q", cwd=work, check=False))
        push = _said(_push(world, balancer, vcs, key, work))
    changed = _state(world, vcs, visibility) != before
    got = (clone, pull, push)
    expected = EXPECTED[visibility, actor]
    if got == expected and changed == (push == "ok"):
        return None
    where = f"{balancer} {vcs} {visibility} ({PLACEMENT[vcs, visibility]}) {actor}"
    if got != expected:
        return f"{where}: clone, pull, push {' / '.join(said[:100] for said in got)}; expected {' / '.join(expected)}"
    return f"{where}: push {push} but the repository {'changed' if changed else 'did not change'}"


def forget_failed_logins(lab: Lab) -> None:
    """Empty every memcached node (singlemalt's throttle): each cell's client is the same bridge address."""
    for host in HOSTS:
        if "cache" in host.roles:
            with socket.create_connection((lab.address(host), MEMCACHED_PORT), timeout=5) as conn:
                conn.sendall(b"flush_all\r\n")
                if not conn.recv(64).startswith(b"OK"):
                    raise LabError(f"memcached on {host.name} did not flush")


# --- the checks -----------------------------------------------------------------------
def _listens(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def host_keys_and_listeners(lab: Lab) -> tuple[bool, str]:
    """Both balancers present the lab's one set of host keys; sshd and the relay listen where their roles say."""
    ours = {tuple(path.read_text().split()[:2]) for path in lab.ssh_dir.glob("ssh_host_*_key.pub")}
    presented = {}
    for balancer in BALANCERS:
        scan = subprocess.run(["ssh-keyscan", "-T", "5", "-p", str(PORTS.ssh), "-t", "ed25519,ecdsa,rsa",
                               lab.address(balancer)], capture_output=True, text=True, timeout=30, check=False)
        presented[balancer] = {tuple(line.split()[1:3]) for line in scan.stdout.splitlines()
                               if line and not line.startswith("#")}
    same = len(ours) == 3 and all(keys == ours for keys in presented.values())
    wrong = []
    for host in STACK_HOSTS:
        for what, port, role in (("sshd", PORTS.ssh, "balancer"), ("relay", PORTS.ssh_relay, "storage")):
            if _listens(lab.address(host), port) != (role in host.roles):
                wrong.append(f"{what} on {host.name}: {'listens' if role not in host.roles else 'does not listen'}")
    text = (f"ssh: {' and '.join(BALANCERS)} present the same {len(ours)} host keys (the lab's one set):"
            f" {'yes' if same else 'NO'}; sshd listens on the balancers only, the relay on the storage hosts only"
            + "".join(f"\n      {line}" for line in wrong)
            + ("" if same else "".join(f"\n      {b}: {sorted(k)[:3]}" for b, k in presented.items())))
    return same and not wrong, text


def client_address(world: World) -> tuple[bool, str]:
    """A session relayed by lb1: the shard's gateway logs the client's address, not lb1's."""
    lab, balancer = world.lab, BALANCERS[0]
    vcs, visibility = next((key for key, shard in PLACEMENT.items() if shard != HOME_SHARD))
    name, shard = world.repos[vcs, visibility], PLACEMENT[vcs, visibility]
    log = lab.data_dir(shard) / "log" / "sshgate.log"
    start = log.stat().st_size
    result = _clone(world, balancer, vcs, name, world.keys[vcs, visibility, "writer"], world.scratch("address"))
    repository = f"{name}.git" if vcs == "git" else name
    found: list[re.Match[str]] = []

    def logged() -> bool:
        with open(log, "rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
        found[:] = [m for m in _SERVED.finditer(text)
                    if m["user"] == world.users["writer"] and m["repo"] == repository and m["reason"] == "relayed"]
        return bool(found)

    try:
        wait_until(f"the session in {shard}'s log", logged, timeout=10)
    except AssertionError:
        return False, (f"ssh: a clone through {balancer} (exit {result.returncode}) left no 'relayed' line in"
                       f" {log}: {_last_line(result.stderr)}")
    client = found[-1]["client"]
    return client == lab.gateway, (f"ssh: a session from {lab.gateway} through {balancer} ({lab.address(balancer)})"
                                   f" is logged by {shard}'s gateway with client={client}")


def silent_session(world: World, seconds: float = 4.0) -> tuple[bool, str]:
    """A relayed session whose client says nothing for ``seconds`` (longer than the relay's connect timeout)."""
    balancer = BALANCERS[0]
    vcs, visibility = next((key for key, shard in PLACEMENT.items() if shard != HOME_SHARD and key[0] == "git"))
    ssh = world.ssh[balancer]
    argv = [*shlex.split(ssh.command(world.keys[vcs, visibility, "writer"])), f"git@{ssh.host}",
            f"git-upload-pack '{world.repos[vcs, visibility]}.git'"]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(seconds)
    # A flush packet: the client wants nothing, and upload-pack ends.
    out, err = process.communicate(b"0000", timeout=60)
    ok = process.returncode == 0 and out.endswith(b"0000") and b"refs/heads/" in out
    return ok, (f"ssh: a relayed git-upload-pack through {balancer} whose client waits {seconds:.0f} s before its"
                f" flush ended with exit {process.returncode}" + ("" if ok else f": {_last_line(err.decode())!r}"))


class Report(Protocol):
    """:class:`tests.cluster.check.Report`: one line per check."""

    def result(self, ok: bool, text: str) -> bool: ...


def check_ssh(lab: Lab, report: Report, work: Path) -> None:
    """Every SSH check, each a line of ``report``."""
    result = report.result
    result(*host_keys_and_listeners(lab))
    started = time.monotonic()
    world = set_up(lab, work)
    failed = seed(world)
    result(not failed, f"ssh: {len(world.repos) - len(failed)}/{len(world.repos)} repositories seeded by their"
                       f" owner through {BALANCERS[0]} (users, keys, grants and seeds in"
                       f" {time.monotonic() - started:.1f} s)" + "".join(f"\n      {line}" for line in failed))
    plan = [(BALANCERS[0], ACTORS), *((balancer, LB2_ACTORS) for balancer in BALANCERS[1:])]
    for balancer, actors in plan:
        started = time.monotonic()
        wrong = []
        count = 0
        for vcs in ("git", "hg"):
            for visibility in VISIBILITIES:
                for actor in actors:
                    count += 1
                    problem = cell(world, balancer, vcs, visibility, actor)
                    if problem is not None:
                        wrong.append(problem)
                    forget_failed_logins(lab)
        shards = sorted(set(PLACEMENT.values()))
        result(not wrong, f"ssh matrix through {balancer}: {count - len(wrong)}/{count} cells as expected"
                          f" ({len(actors)} actors x clone, pull, push x public/private x git/hg, on shards"
                          f" {', '.join(shards)}) in {time.monotonic() - started:.1f} s"
                          + "".join(f"\n      {line}" for line in wrong[:24]))
    result(*silent_session(world))
    result(*client_address(world))
