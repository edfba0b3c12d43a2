"""SIGABRT to the queue pool's gunicorn master while webhook deliveries are in flight.

The queue pool (hostd/work/pool.py) is one more gunicorn pool under the
supervisor. Its master dies abruptly (SIGABRT: gunicorn's arbiter does not
handle it) while four repositories take 40 git pushes through HAProxy, each
push deferring a ``hostd.push`` job that makes one delivery to a receiver
answering in 0.5 s, so deliveries are running and waiting when it happens;
the pushes go on during the outage. One more repository's only delivery is
held by its receiver, so the worker running it is still busy when the
kernel's death signal (SIGTERM) arrives: only the orphan watchdog
(``deploy/gunicorn.conf.py``, ``HOSTD_ORPHAN_GRACE``) ends that worker in
time, and its job is taken over by the restarted pool once its heartbeat
stops (``HOSTD_QUEUE_STALLED_AFTER``).

What must hold: within the grace period (plus a margin) no old worker is
alive and ``hostd reap --dry-run`` finds no orphan (and, while the held
worker lingered, it did name it); supervisord has started a new master,
whose workers answer ``/healthz`` on the queue port; and every push is
delivered, under one delivery id per push, its commit in the body, a
delivery sent twice (the held one) sent with the same id and body.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostd.ops import reap as reaper
from tests.chaos.tools import Report, pool_master
from tests.e2e.hookfixture import Call, Receiver, hook_stack
from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

OWNER = "qchaos"
PASSWORD = "queue chaos password"
#: Repositories pushed to in parallel, each with one hook to the slow-ish receiver.
REPOS = ("alpha", "beta", "gamma", "delta")
PUSHES_PER_REPO = 10
#: Seconds the receiver takes to answer: deliveries stay in flight that long.
DELAY = 0.5
#: The repository whose one delivery the held receiver keeps until released.
HELD_REPO = "held"
#: deploy/gunicorn.conf.py's default HOSTD_ORPHAN_GRACE; the margin covers the
#: watchdog's 0.5 s poll and a busy machine.
ORPHAN_GRACE = 5.0
MARGIN = 3.0
#: The kill comes once this many deliveries have reached the receiver.
KILL_AFTER = 8
DELIVERED_WITHIN = 90.0
#: A held attempt must outlast the watchdog: without it the worker would wait for this POST.
HOOK_TIMEOUT = "60"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from Receiver(delay=DELAY).serve()


@pytest.fixture(scope="module")
def held() -> Iterator[Receiver]:
    """Keeps every POST until ``released`` is set (recording it only then)."""
    running = Receiver()
    running.hold.set()
    yield from running.serve()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own whose queue pool may deliver to loopback (overrides the suite's ``stack``)."""
    yield from hook_stack(tmp_path_factory.mktemp("queue-chaos"), HOSTD_HOOK_TIMEOUT=HOOK_TIMEOUT)


@dataclass(frozen=True)
class Pushed:
    repo: str
    commit: str


@dataclass(frozen=True)
class Proc:
    """A process by PID and start time (field 22 of /proc/PID/stat): a reused PID is not it."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> Proc:
        stat = _stat(pid)
        assert stat is not None, f"process {pid} is gone"
        return cls(pid, stat[2])

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[2] == self.started

    def parent(self) -> int:
        stat = _stat(self.pid)
        return 0 if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent, start time) of a process; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def healthz(stack: Stack) -> int:
    """The status of the queue pool's /healthz (0: no answer)."""
    url = f"http://{stack.settings.bind}:{stack.settings.ports.queue}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def add_hook(stack: Stack, repo: str, url: str) -> int:
    out = stack.hostd("hook", "add", f"{OWNER}/{repo}", url).stdout
    found = re.search(r"added hook (\d+) ", out)
    assert found, out
    return int(found[1])


def clone(stack: Stack, repo: str, work: Path) -> Path:
    stack.clients.git("clone", "-q", stack.url(f"{OWNER}/{repo}.git", OWNER, PASSWORD), str(work))
    return work


def push(stack: Stack, repo: str, work: Path, name: str) -> Pushed:
    """One new commit in ``work``, pushed through HAProxy."""
    git = stack.clients.git
    (work / name).write_text(name + "\n")
    git("add", name, cwd=work)
    git("commit", "-q", "-m", name, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return Pushed(repo, git("rev-parse", "HEAD", cwd=work).stdout.strip())


def push_many(stack: Stack, repo: str, work: Path) -> list[Pushed]:
    return [push(stack, repo, work, f"{repo}-{i}") for i in range(PUSHES_PER_REPO)]


def jobs(stack: Stack) -> dict[tuple[str, str], int]:
    """(task, status) -> how many jobs, now."""
    rows = stack.sql("SELECT task_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2")
    return {(str(task), str(status)): int(str(n)) for task, status, n in rows}


def held_job_running(stack: Stack, hook: int) -> bool:
    rows = stack.sql("SELECT count(*) FROM procrastinate_jobs job JOIN hook_deliveries d"
                     " ON d.id::text = job.args->>'delivery'"
                     " WHERE job.task_name = 'hostd.deliver' AND job.status = 'doing' AND d.hook_id = %s", (hook,))
    return int(str(rows[0][0])) == 1


def failed_jobs(status: str) -> int:
    """The failed column of ``hostd queue status``, summed over its queues."""
    lines = status.splitlines()
    assert lines[0].split("\t")[-1] == "failed", status
    return sum(int(line.split("\t")[-1]) for line in lines[1:] if not line.startswith(("workers:", "warning:")))


def delivered(calls: list[Call]) -> dict[str, set[bytes]]:
    """Delivery id -> the distinct bodies sent under it."""
    bodies: dict[str, set[bytes]] = {}
    for call in calls:
        bodies.setdefault(call.delivery, set()).add(call.body)
    return bodies


def covered(calls: list[Call]) -> set[Pushed]:
    """Every (repository, commit) the bodies of ``calls`` list."""
    return {Pushed(call.payload["repository"]["name"], commit["id"])
            for call in calls for commit in call.payload["commits"]}


def test_sigabrt_to_the_queue_master_during_deliveries_orphans_nothing_and_loses_nothing(
        stack: Stack, receiver: Receiver, held: Receiver, report: Report, tmp_path: Path) -> None:
    stack.add_user(OWNER, PASSWORD)
    for repo in (*REPOS, HELD_REPO):
        stack.seed_git(f"{OWNER}/{repo}", tmp_path / "seed" / repo, {"README": f"{repo}\n".encode()})
    for repo in REPOS:
        add_hook(stack, repo, receiver.url)
    held_hook = add_hook(stack, HELD_REPO, held.url)
    clones = {repo: clone(stack, repo, tmp_path / repo) for repo in (*REPOS, HELD_REPO)}

    workers = [Proc.of(pid) for pid in stack.pool_workers("queue")]
    masters = {worker.parent() for worker in workers}
    master = pool_master(stack, "queue")
    assert masters == {master} and len(workers) == stack.settings.background.workers, (masters, master, workers)

    # The held delivery first: a worker is busy with it when the master dies.
    held_push = push(stack, HELD_REPO, clones[HELD_REPO], "held-0")
    wait_until("a worker runs the held delivery", lambda: held_job_running(stack, held_hook), 30)
    with ThreadPoolExecutor(len(REPOS)) as pool:
        running = [pool.submit(push_many, stack, repo, clones[repo]) for repo in REPOS]
        receiver.wait_for(KILL_AFTER, timeout=60)
        before = jobs(stack)
        os.kill(master, signal.SIGABRT)
        killed_at = time.monotonic()
        got_before = len(receiver.answered())
        # While the held worker lingers, the backstop must see it as an orphan of the queue pool: what
        # `hostd reap --dry-run` runs, in-process (the command takes seconds to start on a busy machine).
        time.sleep(0.5)
        during = reaper.reap(stack.settings.data_dir, dry_run=True)
        lingering = {w.pid for w in workers if w.alive()}
        listed = {o.process.pid for o in during if o.process.pool == "queue"}

        gone: dict[int, float] = {}

        def all_gone() -> bool:
            for worker in workers:
                if worker.pid not in gone and not worker.alive():
                    gone[worker.pid] = time.monotonic() - killed_at
            return len(gone) == len(workers)

        try:
            wait_until("every old queue worker exits", all_gone, ORPHAN_GRACE + MARGIN, interval=0.05)
        finally:
            report.broken.append(
                f"SIGABRT to the queue pool's master {master} (workers {[w.pid for w in workers]}) after "
                f"{got_before} deliveries, with jobs {before} and a delivery held by its receiver; "
                f"{len(REPOS)} clients kept pushing")
            report.saw.append("old workers exited after " + ", ".join(
                f"{pid}: {gone[pid]:.1f}s" if pid in gone else f"{pid}: STILL ALIVE" for pid in
                (w.pid for w in workers)))
        after_gone = time.monotonic() - killed_at
        reap = stack.hostd("reap", "--dry-run").stdout.strip()
        held.released.set()  # the dead worker's attempt is answered now; the job's rerun (stale heartbeat) too
        wait_until("supervisord starts a new queue master", lambda: pool_master(stack, "queue") not in (0, master), 60)
        new = time.monotonic() - killed_at
        wait_until("the new queue pool answers /healthz", lambda: healthz(stack) == 200, 60)
        healthy = time.monotonic() - killed_at
        pushed = [entry for future in running for entry in future.result()]
        pushes_done = time.monotonic() - killed_at
    new_master = pool_master(stack, "queue")
    new_workers = stack.pool_workers("queue")

    pushed.append(held_push)
    fast = [p for p in pushed if p.repo != HELD_REPO]
    wait_until("every push is delivered",
               lambda: covered(receiver.answered()) >= set(fast) and held_push in covered(held.answered()),
               DELIVERED_WITHIN)
    took = time.monotonic() - killed_at
    time.sleep(1.0)  # room for a late duplicate to show
    calls, held_calls = receiver.answered(), held.answered()
    bodies, held_bodies = delivered(calls), delivered(held_calls)
    rows = stack.sql("SELECT state, count(*) FROM hook_deliveries GROUP BY state")
    states = {str(state): int(str(n)) for state, n in rows}
    status = stack.hostd("queue", "status").stdout
    attempts = stack.hostd("hook", "deliveries", str(held_hook)).stdout
    report.saw.append(f"0.5s after the abort, old workers alive {sorted(lingering)}, hostd reap's dry run listed "
                      f"{sorted(listed)}; once they were gone, hostd reap --dry-run: {reap!r}")
    report.evidence.append(
        f"new master {new_master} (workers {new_workers}) seen {new:.1f}s after the abort, /healthz 200 at "
        f"{healthy:.1f}s, the last push done at {pushes_done:.1f}s; {len(pushed)} pushes ({len(fast)} to hooks "
        f"answering in {DELAY}s, 1 held), all delivered by {took:.1f}s: {len(calls)} calls under {len(bodies)} "
        f"ids, the held one {len(held_calls)} time(s) under {len(held_bodies)} id; deliveries by state {states}; "
        f"the held delivery's attempts: {' | '.join(attempts.strip().splitlines())}")

    # No orphan: the old workers are gone within the grace, and the backstop agrees.
    assert after_gone <= ORPHAN_GRACE + MARGIN
    assert lingering, "no old worker outlived SIGTERM: the held delivery did not exercise the orphan watchdog"
    assert reap == f"no orphaned workers of {stack.settings.data_dir}"
    # A new master, its own workers.
    assert new_master not in (0, master)
    assert new_workers and {Proc.of(pid).parent() for pid in new_workers} == {new_master}
    assert not {w.pid for w in workers} & set(new_workers)
    # Nothing lost: one delivery id per push, each push's commit in a body; duplicates identical.
    assert all(len(sent) == 1 for sent in (*bodies.values(), *held_bodies.values())), "an id sent different bodies"
    assert len(bodies) == len(fast) and len(held_bodies) == 1
    for delivery, [body] in bodies.items():
        payload = json.loads(body)
        assert len(payload["commits"]) == 1, (delivery, payload)
    assert covered(calls) == set(fast) and covered(held_calls) == {held_push}
    assert set(states) == {"delivered"}, states
    assert failed_jobs(status) == 0, status
    # ...and "no orphan" meant something: while the held worker lingered, the backstop named it.
    assert lingering <= listed <= {w.pid for w in workers}, (
        f"hostd reap --dry-run did not list the orphaned queue workers {sorted(lingering - listed)}, alive "
        f"after it ran; it found {[o.line for o in during]}")
