"""What the SSH benchmark times, on both sides in alternation: no-op fetch, clone, push, the key lookup.

Each scenario takes the :class:`Bench` (the sides, the plan, the results),
checks what it timed (a clone has every ref at the right commit, a push
moved the branch on the server, a key lookup answered with the key) and
adds samples to :class:`tests.bench.report.Results`, a round at a time, so
ratios compare the sides within a round.  :mod:`tests.bench.ssh_bench`
sets the sides up and reports.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hostd.settings import Settings
from hostd.store.keys import parse_public_key
from tests.bench.clientops import AUTHOR, DATE, Runner
from tests.bench.common import BenchError
from tests.bench.interference import Monitor, Span
from tests.bench.report import Metric, Results, abba_rounds
from tests.bench.sides import OWNER
from tests.e2e.sshclient import Key
from tests.e2e.stackfixture import Stack

#: The sides: our stack; the reference as ``git`` (our key alone in its file) and as ``git10k`` (ours last of many).
OURS, REF, REF_MANY = "ours", "reference", "reference, long authorized_keys"
#: Served repository names, the same on both sides: fetched and cloned; pushed to.
MEDIUM, PUSHED = "medium", "medium-push"
GROUP, KEYS_GROUP = "git over SSH", "key lookup"
FETCH = Metric(GROUP, "no-op fetch (protocol v2)", "ms")
CLONE = Metric(GROUP, "clone, flask-sized", "s")
PUSH = Metric(GROUP, "push of one commit", "ms")
#: The lookup with our key alone in ``ssh_keys``, then with the many: each beside its floor (``/bin/true``).
SPAWN_ONE = Metric(KEYS_GROUP, "floor: /bin/true, started the same way (our key alone)", "ms")
HELPER_ONE = Metric(KEYS_GROUP, "AuthorizedKeysCommand (hostd-ssh keys), our key alone in ssh_keys", "ms")
SPAWN_MANY = Metric(KEYS_GROUP, "floor: /bin/true, started the same way (the many keys)", "ms")
HELPER_MANY = Metric(KEYS_GROUP, "AuthorizedKeysCommand (hostd-ssh keys), with the many keys", "ms")
FETCH_MANY = Metric(KEYS_GROUP, "no-op fetch, with the many keys", "ms")
#: How long after a scenario's last operation its servers' CPU is read: time for sshd and the gateway to reap.
SETTLE = 0.5
#: sshd's own environment for its subprocesses (OpenSSH's ``subprocess()``: _PATH_STDPATH, the user, no more).
SSHD_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
#: ``ssh-ed25519`` and a 32-byte length, the fixed head of every ed25519 key body (RFC 8709).
ED25519_HEAD = "0000000b7373682d6564323535313900000020"
#: Many fake but well-formed ed25519 keys of ``OWNER``: each body's fingerprint is its real SHA-256.
FAKE_KEYS = f"""
INSERT INTO ssh_keys (username, title, kind, blob, fingerprint, bits)
SELECT %s, 'bench fake ' || n, 'ssh-ed25519', encode(raw, 'base64'),
       'SHA256:' || rtrim(encode(sha256(raw), 'base64'), '='), 256
FROM (SELECT n, decode('{ED25519_HEAD}', 'hex') || sha256(convert_to('bench fake key ' || n, 'UTF8')) AS raw
      FROM generate_series(1, %s) AS n) AS fake
ON CONFLICT (fingerprint) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Plan:
    """How many runs of what; ``budget``: seconds per scenario, past which it ends with the round it is in."""

    fetch_runs: int = 30
    clone_runs: int = 7
    push_runs: int = 15
    helper_runs: int = 200
    keys: int = 10_000
    budget: float = 300.0


@dataclass(frozen=True, slots=True)
class Side:
    """One server as a client reaches it: git under its own ``GIT_SSH_COMMAND``, URLs, where it stores."""

    key: str
    runner: Runner
    url: Callable[[str], str]
    git_dir: Callable[[str], Path]


def ssh_command(hosts: Path, key: Path, port: int) -> str:
    """What git runs: no config, strict host keys, this key only, no agent, a new connection every time."""
    return shlex.join(["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={hosts}", "-o", "StrictHostKeyChecking=yes",
                       "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                       "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "LogLevel=ERROR",
                       "-i", str(key), "-p", str(port)])


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and of the children it has waited for (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    """Everything the scenarios use; ``lookup_command`` is set by :func:`key_lookup`.

    ``servers`` are each side's server processes, whose CPU (their own and
    their children's, once reaped) is what serving cost it: our sshd (with
    ``hostd-ssh``) and gateway (with git); the reference's sshd (with
    git-shell and git).  ``cpu`` is that per operation, by metric and side.
    """

    plan: Plan
    work: Path
    source: Path
    sides: dict[str, Side]
    stack: Stack
    key: Key
    monitor: Monitor
    servers: dict[str, tuple[int, ...]]
    results: Results = field(default_factory=Results)
    cpu: dict[tuple[Metric, str], float] = field(default_factory=dict)
    lookup_command: list[str] = field(default_factory=list)
    stored_keys: int = 0
    #: Operations done per side, kept or not (server CPU is divided by these).
    done: dict[str, int] = field(default_factory=dict)
    #: Timed operations seen by :meth:`take`, and how many of them others disturbed.
    timed: int = 0
    disturbed: int = 0

    def take(self) -> list[Span]:
        """The monitor's spans since the last call, counted."""
        spans = self.monitor.take()
        self.timed += len(spans)
        self.disturbed += sum(span.disturbed for span in spans)
        return spans

    def rounds(self, scenario: str, sides: Sequence[str], runs: int) -> Iterator[tuple[int, Side]]:
        """(round, side): ``runs`` rounds of ``sides`` in ABBA order, a disturbed one taken again, within the plan's
        budget (:func:`tests.bench.report.abba_rounds`); every operation counted in ``done``, a dropped round's too.
        """
        for number, key in abba_rounds(self.results, self.take, scenario, sides, runs, self.plan.budget):
            self.done[key] = self.done.get(key, 0) + 1
            yield number, self.sides[key]

    @contextlib.contextmanager
    def server_cpu(self, metric: Metric, sides: Sequence[str]) -> Iterator[None]:
        """Around a scenario's timed rounds: each side's server CPU per timed operation, into ``cpu``.

        Only for sides that share no server process with another side of
        the block (the reference's two accounts share one sshd).
        """
        alone = [key for key in sides if not any(set(self.servers[key]) & set(self.servers[other])
                                                 for other in sides if other != key)]
        before = {key: (sum(process_cpu(pid) for pid in self.servers[key]), self.done.get(key, 0)) for key in alone}
        yield
        time.sleep(SETTLE)
        for key in alone:
            used, count = before[key]
            if self.done.get(key, 0) > count:
                used = sum(process_cpu(pid) for pid in self.servers[key]) - used
                self.cpu[(metric, key)] = used / (self.done[key] - count)

    def scratch(self, name: str) -> Path:
        path = self.work / name
        if path.exists():
            shutil.rmtree(path)
        return path


def check_protocol_v2(side: Side) -> None:
    """The side speaks protocol v2 (sshd passed GIT_PROTOCOL on): the server's first line says so."""
    env = dict(side.runner.clients.env, GIT_TRACE_PACKET="1")
    result = subprocess.run(["git", "ls-remote", side.url(MEDIUM)], env=env, capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0 or "ls-remote< version 2" not in result.stderr:
        raise BenchError(f"{side.key}: ls-remote did not get protocol v2: {result.stderr[-800:]}")


def noop_fetches(bench: Bench, metric: Metric, sides: Sequence[str], runs: int) -> None:
    """``git fetch`` in an up-to-date clone: connection, authentication, ref advertisement, nothing to send."""
    clients: dict[str, Path] = {}
    for index, key in enumerate(sides):
        side, client = bench.sides[key], bench.scratch(f"fetch-{index}")
        side.runner.git("clone", "-q", "--no-checkout", str(bench.source), str(client))
        side.runner.git("-C", str(client), "remote", "set-url", "origin", side.url(MEDIUM))
        side.runner.git("-C", str(client), "fetch", "-q", "origin")  # untimed: up to date, caches warm
        clients[key] = client
    with bench.server_cpu(metric, sides):
        for _number, side in bench.rounds(metric.row, sides, runs):
            seconds = side.runner.timed_git("-C", str(clients[side.key]), "fetch", "-q", "origin")
            bench.results.add(metric, side.key, seconds * 1000)


def clones(bench: Bench) -> None:
    """``git clone --no-checkout`` (the server's and client's work, not the disk's), one untimed each first."""
    expected = bench.sides[OURS].runner.served_refs(bench.source)

    def clone(side: Side) -> float:
        target = bench.scratch("clone")
        seconds = side.runner.timed_git("clone", "-q", "--no-checkout", side.url(MEDIUM), str(target))
        side.runner.check_clone(target, expected)
        shutil.rmtree(target)
        return seconds

    for key in (OURS, REF):
        clone(bench.sides[key])
    with bench.server_cpu(CLONE, (OURS, REF)):
        for _number, side in bench.rounds(CLONE.row, (OURS, REF), bench.plan.clone_runs):
            bench.results.add(CLONE, side.key, clone(side))


def add_commit(runner: Runner, repo: Path, ref: str, parent: str, number: int) -> str:
    """One commit on ``parent`` in bare ``repo`` changing one file (a new blob and tree each time); its id."""
    content = "".join(f"line {line} of the benchmark's SSH push {number}\n" for line in range(100)).encode()
    message = f"bench: SSH push {number}\n".encode()
    stream = (f"commit {ref}\ncommitter {AUTHOR} {DATE + number} +0000\ndata {len(message)}\n".encode() + message
              + f"from {parent}\nM 100644 inline bench/ssh-push.txt\ndata {len(content)}\n".encode() + content
              + b"\n")
    runner.run("git", "-C", str(repo), "fast-import", "--quiet", input_bytes=stream)
    return runner.rev(repo, ref)


def pushes(bench: Bench) -> None:
    """Each round one new commit, pushed to both sides (a fast-forward of one branch); both servers checked."""
    runner, ref = bench.sides[OURS].runner, "refs/heads/ssh-push"
    client = bench.scratch("push-client.git")
    runner.git("clone", "-q", "--bare", str(bench.source), str(client))
    tip = add_commit(runner, client, ref, runner.rev(client, runner.default_branch(bench.source)), 0)

    def push(side: Side) -> float:
        seconds = side.runner.timed_git("-C", str(client), "push", "-q", side.url(PUSHED), f"{tip}:{ref}")
        if side.runner.rev(side.git_dir(PUSHED), ref) != tip:
            raise BenchError(f"{side.key}: the push of {tip} did not arrive")
        return seconds

    for key in (OURS, REF):  # untimed: creates the branch on both
        push(bench.sides[key])
    pushed = 0
    with bench.server_cpu(PUSH, (OURS, REF)):
        for number, side in bench.rounds(PUSH.row, (OURS, REF), bench.plan.push_runs):
            if number + 1 > pushed:
                pushed = number + 1
                tip = add_commit(runner, client, ref, tip, pushed)
            bench.results.add(PUSH, side.key, push(side) * 1000)


def lookup_command(settings: Settings, fingerprint: str) -> list[str]:
    """The stack's ``AuthorizedKeysCommand`` as sshd runs it for a key: its sshd_config line, ``%f`` filled in."""
    for line in (settings.run_dir / "sshd_config").read_text().splitlines():
        if line.startswith("AuthorizedKeysCommand "):
            return [fingerprint if word == "%f" else word for word in shlex.split(line)[1:]]
    raise BenchError(f"no AuthorizedKeysCommand in {settings.run_dir / 'sshd_config'}")


def insert_fake_keys(stack: Stack, count: int) -> int:
    """``count`` fake keys of ``OWNER`` in the stack's database, in one statement; how many keys it holds now.

    A sample is parsed back with hostd's own parser: the fakes are keys hostd
    would store, each under its real fingerprint.
    """
    stack.sql(FAKE_KEYS, (OWNER, count))
    stack.sql("ANALYZE ssh_keys")
    for kind, blob, fingerprint in stack.sql(
            "SELECT kind, blob, fingerprint FROM ssh_keys WHERE title LIKE %s ORDER BY id LIMIT 3", ("bench fake %",)):
        if parse_public_key(f"{kind} {blob}").fingerprint != fingerprint:
            raise BenchError(f"a fake key's fingerprint is not its key's: {fingerprint}")
    ((total,),) = stack.sql("SELECT count(*) FROM ssh_keys")
    return int(str(total))


def key_lookup(bench: Bench) -> None:
    """The AuthorizedKeysCommand timed as sshd runs it, with our key alone and among many; then no-op fetches.

    The command runs as sshd runs it: the configured argv, sshd's minimal
    environment, stdin from /dev/null, stderr discarded; each answer must be
    our key's line.  ``/bin/true`` started the same way, in alternation, is
    the floor: what starting any program costs from here, and it moves with
    the machine's load.  Then the many keys go in, and both are timed
    again; then no-op fetches compare
    ours (many keys in the database) with the reference as ``git`` (a file
    of one line) and ``git10k`` (many lines, ours last).
    """
    user = pwd.getpwuid(os.geteuid())
    env = {"PATH": SSHD_PATH, "USER": user.pw_name, "LOGNAME": user.pw_name, "HOME": user.pw_dir}
    bench.lookup_command = lookup_command(bench.stack.settings, parse_public_key(bench.key.public).fingerprint)
    blob = bench.key.public.split()[1].encode()

    def timed(argv: list[str], expect: bytes) -> float:
        with bench.monitor.span() as span:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, env=env, timeout=30)
        if result.returncode != 0 or expect not in result.stdout:
            raise BenchError(f"{argv[0]} exited {result.returncode} with {result.stdout[:200]!r}")
        return span.wall * 1000

    for floor, helper in ((SPAWN_ONE, HELPER_ONE), (SPAWN_MANY, HELPER_MANY)):
        if helper is HELPER_MANY:
            bench.stored_keys = insert_fake_keys(bench.stack, bench.plan.keys)
        for _ in range(bench.plan.helper_runs):
            bench.results.new_round()
            bench.results.add(floor, OURS, timed(["/bin/true"], b""))
            bench.results.add(helper, OURS, timed(bench.lookup_command, blob))
    noop_fetches(bench, FETCH_MANY, (OURS, REF, REF_MANY), bench.plan.fetch_runs)


#: Every scenario, in the order they run.
SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "fetch": lambda bench: noop_fetches(bench, FETCH, (OURS, REF), bench.plan.fetch_runs),
    "clone": clones,
    "push": pushes,
    "keys": key_lookup,
}
