"""Webhooks end to end: real pushes through HAProxy, the queue pool delivering to a real receiver.

What the durable queue promises (issue 20): a push's delivery is signed and
has one shape for git and hg; a receiver that fails gets the same delivery
(same id, same body) once it recovers; a worker killed in the middle of a
delivery does not lose it; hook URLs that reach the server's own network
are refused, redirects are never followed; a hook that keeps failing is
disabled until enabled again; a repository is maintained in the background
after enough pushes; a late queue shows on ``/metrics``, ``hostd queue
status`` and in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hookfixture import Receiver, hook_stack
from tests.e2e.stackfixture import Stack
from tests.polling import wait_until

OWNER = "hooker"
PASSWORD = "a password for hooks"
SECRET = "the hook's secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for running in hook_stack(tmp_path_factory.mktemp("hook-stack"), HOSTD_MAINTAIN_PUSHES="3",
                              HOSTD_HOOK_DISABLE_AFTER="8", HOSTD_QUEUE_WARN_AGE="1"):
        running.add_user(OWNER, PASSWORD)
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from Receiver().serve()


class Repo:
    """A repository of the hook stack with a clone to push from."""

    def __init__(self, stack: Stack, name: str, vcs: str, work: Path) -> None:
        self.stack, self.name, self.vcs, self.work = stack, f"{OWNER}/{name}", vcs, work
        stack.hostd("repo", "create", self.name, "--vcs", vcs)
        self.url = stack.url(self.name, OWNER, PASSWORD)
        self.count = 0
        if vcs == "git":
            stack.clients.git("clone", "-q", self.url, str(work))
        else:
            stack.clients.hg("clone", "-q", self.url, str(work))

    def hook(self, url: str, *extra: str) -> int:
        out = self.stack.hostd("hook", "add", self.name, url, *extra).stdout
        return int(out.split()[2])

    def push(self, message: str = "") -> str:
        """One new commit pushed through HAProxy; its id."""
        self.count += 1
        message = message or f"commit {self.count}"
        if self.vcs == "git":
            git = self.stack.clients.git
            git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
            git("push", "-q", "origin", "HEAD:main", cwd=self.work)
            return git("rev-parse", "HEAD", cwd=self.work).stdout.strip()
        hg = self.stack.clients.hg
        with open(self.work / "file", "a") as out:
            out.write(f"{self.count}\n")
        hg("commit", "-q", "-A", "-u", "Hanna Hook <hanna@example.com>", "-m", message, cwd=self.work)
        hg("push", "-q", self.url, cwd=self.work)
        return hg("log", "-r", ".", "-T", "{node}", cwd=self.work).stdout.strip()


def test_git_and_hg_pushes_are_delivered_signed_in_one_shape(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    git = Repo(stack, "shape-git", "git", tmp_path / "git")
    hg = Repo(stack, "shape-hg", "hg", tmp_path / "hg")
    for repo in (git, hg):
        repo.hook(receiver.url, "--secret", SECRET)
    pushed = {git.name: git.push("fix <b>the</b> bug\n\nwith a body"), hg.name: hg.push("hg: fix it")}
    receiver.wait_for(2)
    payloads = {}
    for call in receiver.answered():
        assert call.headers["X-Hostd-Event"] == "push"
        expected = "sha256=" + hmac.new(SECRET.encode(), call.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(call.headers["X-Hostd-Signature-256"], expected)
        payloads[call.payload["repository"]["full_name"]] = call.payload
    for name, commit in pushed.items():
        payload = payloads[name]
        assert payload["pusher"] == {"username": OWNER}
        assert [ref["after"] for ref in payload["refs"]] == [commit]
        assert payload["commits"][0]["id"] == commit and payload["total_commits"] == 1
    assert payloads[git.name]["commits"][0]["message"] == "fix <b>the</b> bug\n\nwith a body"
    assert payloads[hg.name]["commits"][0]["author"] == {"name": "Hanna Hook", "email": "hanna@example.com"}
    assert payloads[git.name].keys() == payloads[hg.name].keys()
    assert {ref["ref"] for ref in payloads[hg.name]["refs"]} == {"branch:default"}


def test_a_receiver_failing_five_times_gets_the_same_delivery_once_it_recovers(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    receiver.failures = 5
    repo = Repo(stack, "flaky", "git", tmp_path / "work")
    hook = repo.hook(receiver.url)
    commit = repo.push()
    receiver.wait_for(6)
    calls = receiver.answered()
    assert len({call.delivery for call in calls}) == 1 and len({call.body for call in calls}) == 1
    assert calls[0].payload["refs"][0]["after"] == commit
    (delivery,) = receiver.deliveries()

    def recorded() -> list[str]:
        return stack.hostd("hook", "deliveries", str(hook)).stdout.splitlines()
    wait_until("the delivery recorded as delivered", lambda: "delivered" in recorded()[0], timeout=20)
    lines = recorded()
    assert lines[0].startswith(delivery) and "6 attempts" in lines[0]
    assert [line.split("\t")[1] for line in lines[1:]] == ["500"] * 5 + ["204"]


def test_a_delivery_cut_off_by_a_killed_worker_arrives_with_the_same_id(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    repo = Repo(stack, "killed", "git", tmp_path / "work")
    repo.hook(receiver.url)
    receiver.hold.set()
    repo.push()
    wait_until("the delivery in flight", lambda: receiver.arrivals == 1, timeout=30)
    workers = stack.pool_workers("queue")
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    receiver.hold.clear()
    receiver.released.set()  # the killed attempt's request ends; the new one is answered at once
    took = receiver.wait_for(2, timeout=60)
    assert len(receiver.deliveries()) == 1, "the rerun carries the same X-Hostd-Delivery"
    print(f"redelivered {took:.1f}s after the workers were killed")


def test_hooks_that_reach_the_servers_own_network_are_refused(git_pack_stack: Stack, tmp_path: Path) -> None:
    """On a stack that allows no network (the default), at ``hook add``."""
    stack = git_pack_stack
    stack.hostd("user", "add", "ssrf", stdin="ssrf password\n", check=False)
    stack.hostd("repo", "create", "ssrf/target", "--vcs", "git", check=False)
    probes = {
        "http://127.0.0.1:8080/": "127.0.0.1 is a loopback address",
        "http://[::1]/": "::1 is a loopback address",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
        "http://10.0.0.1/": "10.0.0.1 is a private address",
        "http://172.16.5.4/": "172.16.5.4 is a private address",
        "http://192.168.0.1/": "192.168.0.1 is a private address",
        "http://100.64.0.1/": "100.64.0.1",
        "http://[::ffff:127.0.0.1]/": "127.0.0.1",
        "http://localhost:9/": "localhost resolves to it",
        "http://0.0.0.0/": "0.0.0.0",
    }
    for url, reason in probes.items():
        result = stack.hostd("hook", "add", "ssrf/target", url, check=False)
        assert result.returncode == 1 and "refused" in result.stderr and reason in result.stderr, (url, result)
    assert stack.hostd("hook", "list", "ssrf/target").stdout == ""


def test_a_hook_whose_name_now_resolves_inside_is_refused_at_delivery(
        git_pack_stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    """A URL checked when added, then pointed inside (DNS changed): every attempt checks again."""
    stack = git_pack_stack
    stack.hostd("user", "add", "rebind", stdin="rebind password\n")
    stack.hostd("repo", "create", "rebind/target", "--vcs", "git")
    stack.sql("INSERT INTO hooks (repo_owner, repo_name, url) VALUES ('rebind', 'target', %s)",
              (receiver.url.replace("127.0.0.1", "localhost"),))
    work = tmp_path / "work"
    stack.clients.git("clone", "-q", stack.url("rebind/target", "rebind", "rebind password"), str(work))
    stack.clients.git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    stack.clients.git("push", "-q", "origin", "HEAD:main", cwd=work)
    ((hook,),) = stack.sql("SELECT id FROM hooks WHERE repo_owner = 'rebind'")
    wait_until("the refused attempt", lambda: "refused" in stack.hostd("hook", "deliveries", str(hook)).stdout,
               timeout=30)
    assert "localhost resolves to it" in stack.hostd("hook", "deliveries", str(hook)).stdout
    assert receiver.arrivals == 0


@pytest.fixture
def inside() -> Iterator[Receiver]:
    """Another receiver: what a redirect points at."""
    yield from Receiver().serve()


def test_redirects_are_not_followed(stack: Stack, receiver: Receiver, inside: Receiver, tmp_path: Path) -> None:
    receiver.redirect = inside.url
    repo = Repo(stack, "redirected", "git", tmp_path / "work")
    hook = str(repo.hook(receiver.url))
    repo.push()
    wait_until("the redirect answered",
               lambda: "redirect not followed" in stack.hostd("hook", "deliveries", hook).stdout, timeout=30)
    assert inside.arrivals == 0
    stack.hostd("hook", "del", hook)


def test_a_hook_failing_in_a_row_is_disabled_then_enabled_and_redelivered(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    receiver.failures = 1000
    repo = Repo(stack, "down", "git", tmp_path / "work")
    hook = repo.hook(receiver.url)
    repo.push()

    def listed() -> str:
        return stack.hostd("hook", "list", repo.name).stdout
    wait_until("the hook disabled", lambda: "DISABLED" in listed(), timeout=60)
    assert "8 failed attempts in a row" in listed() and receiver.arrivals == 8
    (delivery,) = receiver.deliveries()
    refused = stack.hostd("hook", "redeliver", delivery, check=False)
    assert refused.returncode == 1 and f"hostd hook enable {hook}" in refused.stderr
    receiver.failures = 0
    stack.hostd("hook", "enable", str(hook))
    assert "active" in listed()
    stack.hostd("hook", "redeliver", delivery)
    receiver.wait_for(9)
    assert receiver.deliveries() == {delivery}
    wait_until("delivered", lambda: "\tdelivered\t" in stack.hostd("hook", "deliveries", str(hook)).stdout,
               timeout=20)


def test_a_repository_is_maintained_in_the_background_after_enough_pushes(stack: Stack, tmp_path: Path) -> None:
    repo = Repo(stack, "busy", "git", tmp_path / "work")
    for _ in range(3):  # HOSTD_MAINTAIN_PUSHES=3 in this stack
        repo.push()
    query = "SELECT pushes, maintained IS NOT NULL FROM repo_upkeep WHERE owner = %s AND name = 'busy'"
    wait_until("the background maintenance", lambda: stack.sql(query, (OWNER,)) == [(0, True)], timeout=60)
    git_dir = stack.settings.repo_root / f"{repo.name}.git"
    assert (git_dir / "packed-refs").is_file()
    assert "packed refs" in (stack.settings.log_dir / "queue.log").read_text()


def test_a_late_queue_shows_on_metrics_status_and_in_the_log(
        stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    """A hook's deliveries go one at a time: while its receiver holds the first, the next two wait."""
    repo = Repo(stack, "late", "git", tmp_path / "work")
    repo.hook(receiver.url)
    receiver.hold.set()
    for _ in range(3):
        repo.push()
    wait_until("the first delivery held", lambda: receiver.arrivals == 1, timeout=30)
    metrics = f"http://{stack.settings.bind}:{stack.settings.ports.queue}/metrics"

    def waiting() -> int:
        with urllib.request.urlopen(metrics, timeout=5) as response:
            text = response.read().decode()
        line = next(line for line in text.splitlines() if line.startswith('hostd_queue_waiting_jobs{queue="hooks"}'))
        return int(float(line.split()[1]))
    wait_until("two deliveries waiting", lambda: waiting() == 2, timeout=30)
    wait_until("the late queue logged", lambda: "queue hooks is late: 2 jobs waiting" in (
        stack.settings.log_dir / "queue.log").read_text(), timeout=30)
    assert "warning: queue hooks is late" in stack.hostd("queue", "status").stdout
    assert receiver.arrivals == 1
    receiver.hold.clear()
    receiver.released.set()
    receiver.wait_for(3)
    assert [call.payload["commits"][0]["message"] for call in receiver.answered()] == [
        "commit 1", "commit 2", "commit 3"], "in the order of the pushes"
    wait_until("the queue drained", lambda: waiting() == 0, timeout=30)
