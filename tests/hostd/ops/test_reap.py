"""``hostd reap`` against a real throwaway process tree.

A tiny Python "master" spawns two "workers" named as deploy/gunicorn.conf.py
names gunicorn's (and, like them, handling the master's SIGTTIN), whose
command lines carry the markers of a pool process; all
three have this test's own ``HOSTD_DATA``, so no other process on the host
(a running stack's workers included) can match. Killing the master orphans
the workers; reap must then find exactly them, TERM them, and KILL the one
that ignores TERM. Only PIDs this test started are ever signalled: reap is
given a ``kill`` that refuses any other PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostd.cli.main import main
from hostd.ops import reap
from tests import pg

# argv of a worker: the code, then words that make the command line look like
# one of a pool's ("gunicorn ... hostd.serve.wsgi:git_app()").
WORKER = """
import ctypes, signal, sys, time
ctypes.CDLL("libc.so.6").prctl(15, b"hostd-worker")   # PR_SET_NAME, as deploy/gunicorn.conf.py's post_fork
signal.signal(signal.SIGTTIN, lambda *_: None)          # gunicorn's workers keep the master's handler
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
for _ in range(600):
    time.sleep(0.1)
"""

MASTER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTTIN, lambda *_: None)   # gunicorn's arbiter
children = [subprocess.Popen([sys.executable, "-c", sys.argv[1], kind, "gunicorn", sys.argv[3]],
                             stdout=subprocess.PIPE, text=True) for kind in ("polite", "stubborn")]
for child in children:
    assert child.stdout.readline() == "ready\\n"
print(" ".join(str(c.pid) for c in children), flush=True)
time.sleep(60)
"""


class Tree:
    """The master and the PIDs of its two workers."""

    def __init__(self, data: Path, app: str = "hostd.serve.wsgi:git_app()") -> None:
        env = dict(os.environ, HOSTD_DATA=str(data))
        self.master = subprocess.Popen(
            [sys.executable, "-c", MASTER, WORKER, "gunicorn", app],
            env=env, stdout=subprocess.PIPE, text=True)
        assert self.master.stdout is not None
        polite, stubborn = self.master.stdout.readline().split()
        self.polite, self.stubborn = int(polite), int(stubborn)

    @property
    def pids(self) -> set[int]:
        return {self.master.pid, self.polite, self.stubborn}

    def kill(self, pid: int, signum: int) -> None:
        """The only ``kill`` reap gets here: refuses any PID but ours."""
        assert pid in self.pids, f"reap tried to signal {pid}, which this test did not start"
        os.kill(pid, signum)

    def cleanup(self) -> None:
        for pid in (self.polite, self.stubborn):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.master.poll() is None:
            self.master.kill()
        self.master.wait(timeout=10)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    running = Tree(tmp_path / "var")
    yield running
    running.cleanup()


def test_live_master_and_its_workers_are_left_alone(tree: Tree, tmp_path: Path) -> None:
    found = reap.scan(tmp_path / "var")
    assert {(p.pid, p.master) for p in found} == {(tree.master.pid, True), (tree.polite, False),
                                                  (tree.stubborn, False)}
    assert all(p.pool == "git" for p in found)
    assert reap.orphans(found) == []
    assert reap.reap(tmp_path / "var", grace=0.5, kill=tree.kill) == []


def test_the_queue_pools_processes_are_pool_processes_too(tmp_path: Path) -> None:
    queue = Tree(tmp_path / "var", "hostd.work.pool:queue_app()")
    try:
        found = reap.scan(tmp_path / "var")
        assert {(p.pid, p.pool, p.master) for p in found} == {
            (queue.master.pid, "queue", True), (queue.polite, "queue", False), (queue.stubborn, "queue", False)}
    finally:
        queue.cleanup()


def test_other_installations_are_not_ours(tree: Tree, tmp_path: Path) -> None:
    assert reap.scan(tmp_path / "elsewhere") == []


def test_orphans_get_term_then_kill(tree: Tree, tmp_path: Path) -> None:
    tree.master.kill()
    tree.master.wait(timeout=10)

    dry = reap.reap(tmp_path / "var", grace=1, dry_run=True, kill=tree.kill)
    assert [(o.process.pid, o.stopped) for o in dry] == [(p, False) for p in sorted((tree.polite, tree.stubborn))]
    assert all("would send TERM, then KILL after 1s" in o.line for o in dry)
    assert alive(tree.polite) and alive(tree.stubborn)

    started = time.monotonic()
    done = {o.process.pid: o for o in reap.reap(tmp_path / "var", grace=1, kill=tree.kill)}
    assert time.monotonic() - started < 6
    assert set(done) == {tree.polite, tree.stubborn}
    assert done[tree.polite].action.startswith("TERM: exited within")
    assert done[tree.stubborn].action == "TERM: still running after 1s; KILL: stopped"
    assert all(o.stopped for o in done.values())
    assert not alive(tree.polite) and not alive(tree.stubborn)
    assert reap.reap(tmp_path / "var", dry_run=True, kill=tree.kill) == []


def test_cli_dry_run_lists_one_line_per_orphan(tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTD_DATABASE_URL", pg.new_database(migrated=False))
    assert main(["init", "--no-demo", "--data", str(tmp_path / "var")]) == 0  # reap acts on an installation
    capsys.readouterr()
    assert main(["reap", "--dry-run", "--data", str(tmp_path / "var")]) == 0
    assert capsys.readouterr().out == f"no orphaned workers of {tmp_path / 'var'}\n"
    tree.master.kill()
    tree.master.wait(timeout=10)
    assert main(["reap", "--dry-run", "--grace", "3", "--data", str(tmp_path / "var")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{pid}\tgit worker, parent {reap.scan(tmp_path / 'var')[0].ppid} is no master of ours"
                     "\twould send TERM, then KILL after 3s" for pid in sorted((tree.polite, tree.stubborn))]


def test_pid_reuse_is_not_signalled(tmp_path: Path) -> None:
    gone = reap.PoolProcess(pid=os.getpid(), ppid=1, start_time=-1, pool="git", master=False)
    sent: list[int] = []
    assert reap._signal(reap.PROC, gone, signal.SIGTERM, lambda pid, sig: sent.append(pid)) is False
    assert sent == []
