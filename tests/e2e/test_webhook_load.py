"""Webhooks under load: every accepted push is delivered once, through HAProxy and across a database restart.

Real git and hg clients push over HTTPS through HAProxy to a stack whose
queue pool delivers to a loopback receiver (tests/e2e/hookfixture.py).

- A thousand pushes, eight at a time to eight repositories (six git, two
  hg: an hg client costs four times a git one's CPU, and the suite runs on
  two cores), make exactly a thousand deliveries: one ``X-Hostd-Delivery`` id per
  push, a repeated call (if any) carries an id already seen and the same
  bytes, the payloads name exactly the commits the clients pushed, and git
  and hg payloads have the same shape.
- Pushes go on while the stack's PostgreSQL stops and starts again: the
  clients retry the pushes refused meanwhile, and afterwards every push that
  landed is delivered under exactly one id, and nothing is in the push log
  without its event (the push log and the job are one transaction, and a
  push accepted while the database was away is kept and written with its
  event once it is back).

Timings are printed, never asserted.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.e2e.hookfixture import Call, Receiver, hook_stack
from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

OWNER = "loader"
PASSWORD = "webhook load password"
#: The load test: this many repositories of each kind, one client thread each...
LOAD_REPOSITORIES = {"git": 6, "hg": 2}
#: ...each pushing this many commits, one push at a time.
LOAD_PUSHES_PER_REPOSITORY = 125
LOAD_PUSHES = sum(LOAD_REPOSITORIES.values()) * LOAD_PUSHES_PER_REPOSITORY
#: Seconds after the last push by which every delivery must have arrived.
DRAIN_TIMEOUT = 120.0
#: The restart test: repositories of each kind (one client thread each), pushes in all.
RESTART_REPOSITORIES = {"git": 2, "hg": 2}
RESTART_PUSHES = 200
#: PostgreSQL stops once this many pushes have landed...
RESTART_AFTER = 60
#: ...for this many seconds, then starts again.
OUTAGE = 5.0
#: A refused push is tried again after this pause, for at most GIVE_UP_AFTER seconds.
RETRY_PAUSE = 1.0
GIVE_UP_AFTER = 60.0
#: Seconds after the last push by which every landed push must be delivered (a
#: push's job that met the database away is retried with a backoff of 5 s and more).
RESTART_DRAIN_TIMEOUT = 180.0
#: One git or hg command that takes longer than this has hung.
CLIENT_TIMEOUT = 120.0

Payload = dict[str, Any]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from Receiver().serve()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module, delivering to loopback with the fast queue timings."""
    yield from hook_stack(tmp_path_factory.mktemp("webhook-load"))


@pytest.fixture(scope="module")
def owner(stack: Stack) -> str:
    stack.add_user(OWNER, PASSWORD)
    return OWNER


@dataclass
class Pusher:
    """One clone of one repository of the stack, made over HTTPS through HAProxy, that pushes one commit at a time.

    Its commits are made before the pushes (:meth:`prepare`), hg's in one
    process (``hg import`` of one patch per commit, each appending a line to a
    file): an hg process costs a fifth of a second of CPU, and the pushes,
    not the commits, are what is measured. Each push then sends the next
    commit (``git push origin ID:refs/heads/main``, ``hg push -r ID``).
    """

    stack: Stack
    vcs: str
    repo: str
    work: Path
    #: The commits to push, oldest first.
    commits: list[str] = field(default_factory=list)
    #: Every commit that landed, in order.
    pushed: list[str] = field(default_factory=list)
    #: Seconds spent pushing, every attempt counted.
    pushing: float = 0.0

    @property
    def url(self) -> str:
        # hg keeps no password in its saved default path: every push is given the credentials.
        return self.stack.url(f"{self.repo}.git" if self.vcs == "git" else self.repo, OWNER, PASSWORD)

    def clone(self) -> None:
        if self.vcs == "git":
            self.stack.clients.git("clone", "-q", self.url, str(self.work), timeout=CLIENT_TIMEOUT)
        else:
            self.stack.clients.hg("clone", "-q", self.url, str(self.work), timeout=CLIENT_TIMEOUT)

    def prepare(self, count: int) -> None:
        """Make ``count`` new commits in the (empty) clone: git's empty, hg's each appending a line to a file."""
        clients = self.stack.clients
        if self.vcs == "git":
            for n in range(count):
                clients.git("commit", "-q", "--allow-empty", "-m", f"push {n}", cwd=self.work)
            listed = clients.git("rev-list", "--reverse", "HEAD", cwd=self.work).stdout
        else:
            patches = []
            for n, patch in enumerate(hg_patches(count)):
                patches.append(self.work.parent / f"{self.work.name}-{n}.patch")
                patches[-1].write_text(patch, encoding="utf-8")
            clients.hg("import", "-q", *map(str, patches), cwd=self.work, timeout=CLIENT_TIMEOUT)
            listed = clients.hg("log", "-r", "all()", "-T", "{node}\\n", cwd=self.work).stdout
        self.commits = listed.split()
        assert len(self.commits) == count, listed

    def push(self, commit: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        if self.vcs == "git":
            result = self.stack.clients.git("push", "-q", "origin", f"{commit}:refs/heads/main", cwd=self.work,
                                            check=False, timeout=CLIENT_TIMEOUT)
        else:
            result = self.stack.clients.hg("push", "-r", commit, self.url, cwd=self.work, check=False,
                                           timeout=CLIENT_TIMEOUT)
        self.pushing += time.monotonic() - started
        return result

    def landed(self, result: subprocess.CompletedProcess[str]) -> bool:
        """The push is in: accepted now, or (hg's "nothing to push") by an attempt the client saw fail."""
        if result.returncode == 0:
            return True
        return self.vcs == "hg" and result.returncode == 1 and "no changes found" in result.stdout

    def pushed_commits(self) -> set[tuple[str, str]]:
        return {(self.repo, commit) for commit in self.pushed}


def hg_patches(count: int) -> list[str]:
    """``count`` patches for ``hg import``, each a commit that appends the line "push N" to pushes.txt."""
    patches = []
    lines: list[str] = []
    for n in range(count):
        grown = [*lines, f"push {n}\n"]
        header = "diff --git a/pushes.txt b/pushes.txt\n" + ("" if lines else "new file mode 100644\n")
        diff = "".join(difflib.unified_diff(lines, grown, "a/pushes.txt" if lines else "/dev/null", "b/pushes.txt"))
        patches.append(f"# HG changeset patch\n# User Test User <test@example.com>\npush {n}\n\n{header}{diff}")
        lines = grown
    return patches


def make_pushers(stack: Stack, owner: str, root: Path, prefix: str, kinds: dict[str, int], receiver: Receiver,
                 commits: int) -> list[Pusher]:
    """New repositories, each with one hook to the receiver and one clone holding ``commits`` commits to push."""
    pushers = []
    for vcs, count in kinds.items():
        for i in range(count):
            repo = f"{owner}/{prefix}-{vcs}-{i}"
            stack.hostd("repo", "create", repo, "--vcs", vcs)
            stack.hostd("hook", "add", repo, receiver.url)
            pushers.append(Pusher(stack, vcs, repo, root / f"{prefix}-{vcs}-{i}"))

    def ready(pusher: Pusher) -> None:
        pusher.clone()
        pusher.prepare(commits)

    with ThreadPoolExecutor(len(pushers)) as pool:
        list(pool.map(ready, pushers))
    return pushers


@dataclass
class Inbox:
    """The receiver's calls, each payload parsed once however often it is looked at."""

    receiver: Receiver
    parsed: list[tuple[Call, Payload]] = field(default_factory=list)

    def calls(self, repos: set[str]) -> list[tuple[Call, Payload]]:
        """Every call so far whose payload is about one of ``repos``, in arrival order."""
        answered = self.receiver.answered()
        self.parsed.extend((call, call.payload) for call in answered[len(self.parsed):])
        return [(call, payload) for call, payload in self.parsed if payload["repository"]["full_name"] in repos]

    def deliveries(self, repos: set[str]) -> dict[str, Payload]:
        """The payload of each distinct delivery id about ``repos``."""
        return {call.delivery: payload for call, payload in self.calls(repos)}


def check_repeats(calls: list[tuple[Call, Payload]]) -> int:
    """Assert that every repeated delivery id came with the very bytes of its first call; how many repeats."""
    first: dict[str, bytes] = {}
    repeats = 0
    for call, _ in calls:
        if call.delivery not in first:
            first[call.delivery] = call.body
            continue
        repeats += 1
        assert call.body == first[call.delivery], f"delivery {call.delivery} sent again with another body"
    return repeats


def delivered_commits(deliveries: dict[str, Payload]) -> dict[tuple[str, str], set[str]]:
    """(repository, refs[0].after) of each delivery, mapped to the delivery ids that carried it."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for delivery, payload in deliveries.items():
        found[(payload["repository"]["full_name"], payload["refs"][0]["after"])].add(delivery)
    return found


def per_push(pushers: list[Pusher]) -> str:
    """Mean seconds a client spent per landed push (its attempts together), for each vcs."""
    parts = []
    for vcs in ("git", "hg"):
        mine = [p for p in pushers if p.vcs == vcs]
        parts.append(f"{vcs} {sum(p.pushing for p in mine) / max(1, sum(len(p.pushed) for p in mine)):.2f}s")
    return ", ".join(parts)


def last_delivery(calls: list[tuple[Call, Payload]], since: float) -> float:
    """Seconds from ``since`` (a time.time()) to the last of ``calls``."""
    return max((call.at for call, _ in calls), default=since) - since


def settle(what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Wait up to ``timeout`` s for ``condition``; if it never comes, say so: the assertions after it say what lacks."""
    try:
        wait_until(what, condition, timeout=timeout, interval=0.5)
    except AssertionError as error:
        print(f"\n{error}")


def test_a_thousand_pushes_through_haproxy_make_a_thousand_deliveries(
        stack: Stack, owner: str, receiver: Receiver, tmp_path: Path) -> None:
    pushers = make_pushers(stack, owner, tmp_path, "load", LOAD_REPOSITORIES, receiver, LOAD_PUSHES_PER_REPOSITORY)
    repos = {p.repo for p in pushers}

    def push_all(pusher: Pusher) -> None:
        for commit in pusher.commits:
            result = pusher.push(commit)
            assert result.returncode == 0, (f"{pusher.repo}: push of {commit} exited {result.returncode}\n"
                                            f"{result.stdout}\n{result.stderr}")
            pusher.pushed.append(commit)

    started = time.monotonic()
    with ThreadPoolExecutor(len(pushers)) as pool:
        for future in [pool.submit(push_all, p) for p in pushers]:
            future.result()
    pushed_for = time.monotonic() - started
    last_push = time.time()

    inbox = Inbox(receiver)
    settle(f"{LOAD_PUSHES} distinct deliveries", lambda: len(inbox.deliveries(repos)) >= LOAD_PUSHES, DRAIN_TIMEOUT)
    calls = inbox.calls(repos)
    print(f"\n{LOAD_PUSHES} pushes in {pushed_for:.1f}s;"
          f" last delivery {last_delivery(calls, last_push):.1f}s after the last push;"
          f" per push: {per_push(pushers)}")

    deliveries = inbox.deliveries(repos)
    repeats = check_repeats(calls)
    print(f"{len(calls)} calls for {len(deliveries)} delivery ids ({repeats} repeated)")
    pushed = set().union(*(p.pushed_commits() for p in pushers))
    assert len(pushed) == LOAD_PUSHES
    delivered = delivered_commits(deliveries)
    never = Counter(repo for repo, _ in pushed - set(delivered))
    assert len(deliveries) == LOAD_PUSHES, f"{len(deliveries)} delivery ids; never delivered, by repository: {never}"
    assert set(delivered) == pushed, (f"pushed, never delivered: {sorted(pushed - set(delivered))[:5]};"
                                      f" delivered, never pushed: {sorted(set(delivered) - pushed)[:5]}")
    shapes = {vcs: {tuple(sorted(payload)) for payload in deliveries.values() if payload["repository"]["vcs"] == vcs}
              for vcs in LOAD_REPOSITORIES}
    assert all(len(keys) == 1 for keys in shapes.values()), shapes
    assert shapes["git"] == shapes["hg"], shapes


@dataclass
class Progress:
    """Pushes landed so far across the client threads; ``due`` is set once PostgreSQL should go."""

    landed: int = 0
    refusals: list[str] = field(default_factory=list)
    due: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def land(self) -> None:
        with self.lock:
            self.landed += 1
            if self.landed >= RESTART_AFTER:
                self.due.set()

    def refused(self, why: str) -> None:
        with self.lock:
            self.refusals.append(why)


def gist(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed client said, in one line: the line naming the status if any, else its last line."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    status = [line for line in lines if re.search(r"\b[45]\d\d\b", line)]
    return (status or lines or [f"exit {result.returncode}, no output"])[-1][:160]


def push_until_landed(pusher: Pusher, commit: str, progress: Progress) -> None:
    started = time.monotonic()
    while True:
        result = pusher.push(commit)
        if pusher.landed(result):
            pusher.pushed.append(commit)
            progress.land()
            return
        progress.refused(f"{pusher.vcs} exit {result.returncode}: {gist(result)}")
        assert time.monotonic() - started < GIVE_UP_AFTER, (
            f"{pusher.repo}: {commit} not accepted within {GIVE_UP_AFTER:.0f}s:\n{result.stdout}\n{result.stderr}")
        time.sleep(RETRY_PAUSE)


@dataclass
class Restart:
    """Stops the stack's PostgreSQL once ``due``, and starts it again OUTAGE seconds later."""

    stack: Stack
    progress: Progress
    said: list[str] = field(default_factory=list)
    #: Pushes landed when PostgreSQL was stopped, and when it was started again.
    landed_at: list[int] = field(default_factory=list)

    def __call__(self) -> None:
        if not self.progress.due.wait(timeout=600):
            return
        self.landed_at.append(self.progress.landed)
        self.said.append(self.stack.supervisorctl("stop", "postgres"))
        time.sleep(OUTAGE)
        self.said.append(self.stack.supervisorctl("start", "postgres"))
        self.landed_at.append(self.progress.landed)


def logged_warnings(stack: Stack, text: str) -> int:
    """Lines of the pools' logs that contain ``text``."""
    return sum(line.count(text) for name in ("git.log", "hg.log")
               for line in (stack.settings.log_dir / name).read_text(errors="replace").splitlines())


@pytest.mark.skipif(pg.EXTERNAL is not None, reason="the stack runs no PostgreSQL of its own to restart")
def test_every_push_is_delivered_across_a_postgresql_restart(
        stack: Stack, owner: str, receiver: Receiver, tmp_path: Path) -> None:
    each = RESTART_PUSHES // sum(RESTART_REPOSITORIES.values())
    pushers = make_pushers(stack, owner, tmp_path, "restart", RESTART_REPOSITORIES, receiver, each)
    repos = {p.repo for p in pushers}
    progress = Progress()
    restart = Restart(stack, progress)

    def push_all(pusher: Pusher) -> None:
        for commit in pusher.commits:
            push_until_landed(pusher, commit, progress)

    started = time.monotonic()
    with ThreadPoolExecutor(len(pushers) + 1) as pool:
        restarted: Future[None] = pool.submit(restart)
        futures = [pool.submit(push_all, p) for p in pushers]
        try:
            for future in futures:
                future.result()
        finally:
            progress.due.set()  # a client that failed early must not leave the restart waiting
        restarted.result()
    pushed_for = time.monotonic() - started
    last_push = time.time()

    assert restart.said[:1] == ["postgres: stopped"] and restart.said[1:] == ["postgres: started"], restart.said
    landed = set().union(*(p.pushed_commits() for p in pushers))
    assert len(landed) == each * len(pushers)
    assert restart.landed_at[1] < len(landed), "every push landed before PostgreSQL was back"

    inbox = Inbox(receiver)

    def pushlog() -> set[tuple[str, str]]:
        rows = stack.sql("SELECT owner || '/' || name, new FROM pushlog WHERE owner = %s AND name = ANY(%s)",
                         (OWNER, [repo.split("/", 1)[1] for repo in repos]))
        return {(str(repo), str(new)) for repo, new in rows}

    def settled() -> bool:
        delivered = set(delivered_commits(inbox.deliveries(repos)))
        return landed <= delivered and pushlog() <= delivered

    settle("every landed push delivered, and every push-log entry", settled, RESTART_DRAIN_TIMEOUT)
    calls = inbox.calls(repos)
    refusals = Counter(progress.refusals)
    print(f"\n{len(landed)} pushes in {pushed_for:.1f}s; PostgreSQL stopped after {restart.landed_at[0]} had landed"
          f" and started again {OUTAGE:.0f}s later, after {restart.landed_at[1]};"
          f" last delivery {last_delivery(calls, last_push):.1f}s after the last push")
    print(f"{len(progress.refusals)} refused attempts: "
          + ("; ".join(f"{n}x {why}" for why, n in refusals.most_common()) or "none"))
    print(f"pushes the pools kept while the database was away:"
          f" {logged_warnings(stack, 'push log: database unreachable')}; per push: {per_push(pushers)}")

    repeats = check_repeats(calls)
    deliveries = inbox.deliveries(repos)
    print(f"{len(calls)} calls for {len(deliveries)} delivery ids ({repeats} repeated)")
    delivered = delivered_commits(deliveries)
    assert landed <= set(delivered), f"landed, never delivered: {sorted(landed - set(delivered))[:5]}"
    twice = {commit: ids for commit, ids in delivered.items() if len(ids) > 1}
    assert not twice, f"pushes delivered under more than one id: {list(twice.items())[:5]}"
    assert set(delivered) == landed, f"delivered, never landed: {sorted(set(delivered) - landed)[:5]}"
    logged = pushlog()
    assert logged <= set(delivered), f"in the push log without an event: {sorted(logged - set(delivered))[:5]}"
    assert landed <= logged, f"landed, not in the push log: {sorted(landed - logged)[:5]}"
