"""``make attack``: legitimate clients under hostile load, against a real stack.

Two phases of the same length (``HOSTD_ATTACK_SECONDS``, default 60): 16
legitimate clients (``HOSTD_ATTACK_CLIENTS``) from 127.0.0.1 cloning,
fetching and pushing with git and hg (the soak's clients, each pushing to a
branch of its own), first alone, then while :mod:`tests.chaos.attackers`
holds 200 stalled connections from one address and a few from each of 50
others, guesses passwords and sends gzip bombs. It prints the legitimate
clients' success rate and p50/p99 latency in both phases, the attackers'
outcomes, and PASS or MISS against the issue's targets: 100% success, p99
under attack within 2x the baseline, no attacker SERVED. Exit status 0
only if all are met::

    python -m tests.chaos.attack            # ~4 minutes on 2 cores
    HOSTD_ATTACK_SECONDS=20 python -m tests.chaos.attack

``tests/chaos/test_attack.py`` runs a short version under ``make test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from hostd.ops.haproxy import command as haproxy_command
from tests.chaos.attack_report import Phase, Sample, report, verdict
from tests.chaos.attackers import FULL, Attack, Plan, Target
from tests.chaos.conftest import OWNER, PASSWORD, Repos, _seed_hg
from tests.chaos.test_soak import Client
from tests.chaos.tools import LogMark, kill_client, last_line, spawn
from tests.e2e.stackfixture import Stack, start_stack, stop_stack

#: A legitimate operation that takes longer than this failed.
OP_TIMEOUT = 90.0
#: At most this many operations per client and phase (the phase's time bounds it first).
MAX_OPS = 5000
#: How long the attackers get to open their connections before the measured phase.
RAMP_SECONDS = 15.0


class TimedClient(Client):
    """A soak client that records every operation's latency and outcome.

    Each operation runs in a session of its own and is killed with its
    helpers (git-remote-https, ssh...) after :data:`OP_TIMEOUT`.
    """

    def __init__(self, stack: Stack, repos: Repos, work: Path, index: int) -> None:
        super().__init__(stack, repos, work, index)
        self.samples: list[Sample] = []

    def _run(self, op: str, *args: str, cwd: Path | None = None) -> None:
        started = time.monotonic()
        process = spawn(self.stack, *args, cwd=cwd)
        try:
            _, stderr = process.communicate(timeout=OP_TIMEOUT)
            ok, why = process.returncode == 0, f"exit {process.returncode}: {last_line(stderr)}"
        except subprocess.TimeoutExpired:
            kill_client(process)
            ok, why = False, f"no answer within {OP_TIMEOUT:g}s"
        self.samples.append(Sample(op, ok, time.monotonic() - started))
        self.counts[op] += 1
        if not ok:
            self.errors.append(f"client {self.index} {op}: {why}")

    def phase(self, deadline: float) -> None:
        """Loop over the operations until ``deadline`` (or :data:`MAX_OPS`)."""
        n = self.index + len(self.samples)
        for _ in range(MAX_OPS):
            if time.monotonic() >= deadline:
                break
            try:
                self.step(n)
            except Exception as error:  # a failed local commit: report, keep going
                self.errors.append(f"client {self.index}: {type(error).__name__}: {str(error)[:200]}")
            n += 1


# --- Setting up -------------------------------------------------------------------------

def seed(stack: Stack, root: Path) -> Repos:
    """The small repositories of the chaos suite (``tests/chaos/conftest.py``),
    the ones the soak's clients use; they stand in for the big ones too."""
    stack.add_user(OWNER, PASSWORD)
    git_head = stack.seed_git(f"{OWNER}/small", root / "git-small", {"README": b"small\n"})
    hg_node = _seed_hg(stack, "hsmall", root / "hg-small", {"README": b"small\n"})
    git, hg = stack.url(f"{OWNER}/small.git", OWNER, PASSWORD), stack.url(f"{OWNER}/hsmall", OWNER, PASSWORD)
    return Repos(git, git, git_head, hg, hg, hg_node)


def targets(stack: Stack, root: Path) -> Target:
    """Public repositories for the attackers next to the private ones of :func:`seed`."""
    stack.hostd("repo", "create", f"{OWNER}/open", "--vcs", "git", "--public")
    git, work = stack.clients.git, root / "git-open"
    git("init", "-q", str(work))
    (work / "README").write_text("public\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", str(stack.settings.repo_root / OWNER / "open.git"), "HEAD:refs/heads/main", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    stack.hostd("repo", "create", f"{OWNER}/hopen", "--vcs", "hg", "--public")
    settings = stack.settings
    return Target(
        host=settings.bind, port=settings.ports.https, ca_file=settings.tls_dir / "ca.pem",
        git_paths=(f"/{OWNER}/small.git/git-upload-pack", f"/{OWNER}/open.git/git-upload-pack"),
        hg_paths=(f"/{OWNER}/hsmall?cmd=unbundle", f"/{OWNER}/hopen?cmd=unbundle"),
        bomb_path=f"/{OWNER}/open.git/git-upload-pack",
        bomb_want=head,
        guess_path=f"/{OWNER}/small.git/info/refs?service=git-upload-pack",
        real_users=(OWNER, "demo"),  # the legitimate clients' account, and the one bootstrap creates
    )


def prepare(stack: Stack, repos: Repos, work: Path, count: int) -> list[TimedClient]:
    """``count`` clients with their clones, made a few at a time."""
    clients = [TimedClient(stack, repos, work / f"c{i}", i) for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(TimedClient.prepare, clients))
    return clients


# --- Running ----------------------------------------------------------------------------

def _load(clients: list[TimedClient], seconds: float) -> tuple[list[Sample], list[str]]:
    """Every client loops for ``seconds``; the samples and errors of this run."""
    marks = [(len(c.samples), len(c.errors)) for c in clients]
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=c.phase, args=(deadline,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + OP_TIMEOUT + 60)
    samples = [s for c, (n, _) in zip(clients, marks, strict=True) for s in c.samples[n:]]
    errors = [e for c, (_, n) in zip(clients, marks, strict=True) for e in c.errors[n:]]
    return samples, errors


def run_phase(stack: Stack, clients: list[TimedClient], seconds: float, attack: Attack | None) -> Phase:
    """One phase: the legitimate load for ``seconds``, under ``attack`` if given."""
    phase = Phase("under attack" if attack else "baseline", seconds, attack=attack)
    started = time.monotonic()
    stack.forget_failed_logins()
    haproxy = LogMark(stack.settings.log_dir / "haproxy.log")
    if attack is not None:
        attack.start()
        wanted = attack.plan.one_address_connections + attack.plan.many_addresses * attack.plan.per_address
        ramp_end = time.monotonic() + RAMP_SECONDS
        while attack.open_now < wanted and time.monotonic() < ramp_end:
            time.sleep(0.2)
        phase.stalled_open = attack.open_now
        info = dict(line.split(": ", 1) for line in haproxy_command(stack.settings, "show info").splitlines()
                    if ": " in line)
        phase.haproxy_conns = f"{info.get('CurrConns', '?')} of Maxconn {info.get('Maxconn', '?')}"
    try:
        phase.samples, phase.errors = _load(clients, seconds)
    finally:
        if attack is not None:
            attack.stop()
        phase.took = time.monotonic() - started
    phase.haproxy_log = haproxy.lines()
    phase.pool_downs = [line.strip() for line in phase.haproxy_log if " is DOWN" in line]
    return phase


def run_scenario(stack: Stack, repos: Repos, target: Target, work: Path, *, plan: Plan = FULL,
                 seconds: float = 60.0, clients: int = 16, baseline: bool = True) -> list[Phase]:
    """The baseline (unless ``baseline`` is False) and the attacked phase."""
    legit = prepare(stack, repos, work, clients)
    phases = [run_phase(stack, legit, seconds, None)] if baseline else []
    phases.append(run_phase(stack, legit, seconds, Attack(target, plan)))
    return phases


# --- make attack -------------------------------------------------------------------------------

def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Start a stack in a temporary directory, run both phases, print the report, stop the stack."""
    seconds = float(os.environ.get("HOSTD_ATTACK_SECONDS", "60"))
    clients = int(os.environ.get("HOSTD_ATTACK_CLIENTS", "16"))
    signal.signal(signal.SIGTERM, _terminate)
    with tempfile.TemporaryDirectory(prefix="hostd-attack-") as tmp:
        root = Path(tmp)
        print(f"starting a stack in {root}...", flush=True)
        stack = start_stack(root / "stack")
        try:
            repos = seed(stack, root / "seed")
            target = targets(stack, root / "seed")
            print(f"{clients} legitimate clients, {seconds:g} s baseline, then {seconds:g} s under attack...",
                  flush=True)
            phases = run_scenario(stack, repos, target, root / "clients", seconds=seconds, clients=clients)
        finally:
            stop_stack(stack)
    print(report(phases, FULL, clients), flush=True)
    return 0 if verdict(phases)[0] else 1


if __name__ == "__main__":
    sys.exit(main())
