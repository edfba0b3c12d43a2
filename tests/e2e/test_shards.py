"""Two storage shards behind one HAProxy: each repository is served by its own shard's pools.

The stack is shard ``default``. A second shard, ``s2``, is a git and an hg
pool (the same gunicorn entry points, ``HOSTD_SHARD=s2``) with a repository
directory of its own, sharing the stack's database, memcached and secret, as
a pool host would. ``hostd shard add`` and ``hostd routes sync`` plus a
reload put its backends and its repositories' routes into HAProxy; the real
git and hg clients then clone and push through the one load balancer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hostd.ops import haproxy
from hostd.ops.stack import environment, reload_haproxy
from hostd.settings import PROJECT_ROOT, Settings
from tests.e2e.stackfixture import VENV_BIN, Stack, start_stack, stop_stack
from tests.polling import wait_until
from tests.ports import free_ports

PASSWORD = "alice's password"
#: What ``hostd routes sync`` said right after ``hostd shard add s2``, before the reload.
FIRST_SYNC: list[str] = []


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Settings]]:
    """A stack (shard ``default``) and shard ``s2``'s running pools, routed by HAProxy."""
    root = tmp_path_factory.mktemp("sharded")
    running = start_stack(root)
    pools: list[subprocess.Popen[bytes]] = []
    try:
        git_port, hg_port = free_ports(2)
        home = running.settings
        s2 = replace(home, data_dir=root / "s2", shard="s2", database_url=home.database,
                     memcached_nodes=home.memcached, trusted_proxies=("127.0.0.1",),
                     ports=replace(home.ports, git=git_port, hg=hg_port))
        for directory in (s2.data_dir, s2.repo_root, s2.run_dir):
            directory.mkdir(mode=0o700, parents=True)
        shutil.copy2(home.secret_file, s2.secret_file)
        env = environment(s2)
        for pool, port in (("git", git_port), ("hg", hg_port)):
            log = (root / f"s2-{pool}.log").open("wb")
            pools.append(subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{port}", "--name", f"hostd-{pool}-s2", f"hostd.serve.wsgi:{pool}_app()"],
                env=env, stdout=log, stderr=subprocess.STDOUT))
            wait_until(f"s2's {pool} pool answers", lambda port=port: _healthy(port), timeout=30)
        running.hostd("shard", "add", "s2", "--weight", "0",
                      "--git", f"127.0.0.1:{git_port}", "--hg", f"127.0.0.1:{hg_port}")
        # A new shard's backends come with a reload (the map alone cannot name them).
        FIRST_SYNC.append(running.hostd("routes", "sync").stdout)
        reload_haproxy(running.settings)
        wait_until("s2's backends are up", lambda: _backends_up(running), timeout=30)
        running.add_user("alice", PASSWORD)
        yield running, s2
    finally:
        for process in pools:
            process.terminate()
        for process in pools:
            process.wait(timeout=30)
        stop_stack(running)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _hostd_on(s2: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``hostd`` as run on a host of shard s2."""
    env = dict(os.environ, HOSTD_SHARD="s2", HOSTD_DATABASE_URL=s2.database)
    return subprocess.run([str(VENV_BIN / "hostd"), *args, "--data", str(s2.data_dir)],
                          capture_output=True, text=True, timeout=60, env=env, check=True)


def _backends_up(stack: Stack) -> bool:
    rows = haproxy.stat(stack.settings, types=haproxy.SERVERS)
    return {(r["pxname"], r["status"]) for r in rows if r["pxname"] in ("git-s2", "hg-s2")} == {
        ("git-s2", "UP"), ("hg-s2", "UP")}


def test_each_repository_is_served_by_its_shard(sharded: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, s2 = sharded
    # alice/proj on s2; alice/projectx (whose name begins with it) and alice/home here.
    _hostd_on(s2, "repo", "create", "alice/proj", "--vcs", "git", "--shard", "s2")
    _hostd_on(s2, "repo", "create", "alice/notes", "--vcs", "hg", "--shard", "s2")
    stack.hostd("repo", "create", "alice/projectx", "--vcs", "git", "--shard", "default")

    assert "shards s2 have no backends in the running HAProxy" in FIRST_SYNC[0]
    synced = stack.hostd("routes", "sync").stdout
    assert synced.startswith("2 repositories routed to other shards (route files written); 2 map entries loaded")
    assert "no backends" not in synced
    assert stack.hostd("routes", "show").stdout == "alice/notes\ts2\nalice/proj\ts2\n"

    git, hg = stack.clients.git, stack.clients.hg
    for name in ("proj", "projectx"):
        work = tmp_path / name
        git("clone", "-q", stack.url(f"alice/{name}.git", "alice", PASSWORD), str(work))
        (work / "f").write_text(name)
        git("add", "f", cwd=work)
        git("commit", "-q", "-m", name, cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
    # Each push landed on its own shard's disk, nowhere else.
    assert (s2.repo_root / "alice" / "proj.git" / "refs" / "heads" / "main").exists()
    assert not (stack.settings.repo_root / "alice" / "proj.git").exists()
    assert (stack.settings.repo_root / "alice" / "projectx.git" / "refs" / "heads" / "main").exists()
    # Any spelling of the name reaches the same shard.
    git("clone", "-q", stack.url("Alice/PROJ", "alice", PASSWORD), str(tmp_path / "again"))
    assert (tmp_path / "again" / "f").read_text() == "proj"

    url = stack.url("alice/notes", "alice", PASSWORD)
    hg("clone", "-q", url, str(tmp_path / "notes"))
    (tmp_path / "notes" / "n").write_text("note")
    hg("commit", "-q", "-A", "-m", "note", cwd=tmp_path / "notes")
    hg("push", "-q", url, cwd=tmp_path / "notes")  # hg keeps no password in the saved default path
    assert (s2.repo_root / "alice" / "notes" / ".hg" / "store").is_dir()

    log = (stack.settings.log_dir / "haproxy.log").read_text()
    assert " git-s2/" in log and " hg-s2/" in log


def test_a_stale_route_gets_421_with_the_reason(sharded: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, _ = sharded
    stack.hostd("repo", "create", "alice/stray", "--vcs", "git", "--public", "--shard", "default")
    # A load balancer that misses an update: its follower stopped, the
    # repository moved in the database. It goes home, where it is not.
    assert "stopped" in stack.supervisorctl("stop", "routes")
    try:
        stack.sql("UPDATE repos SET shard = 's2' WHERE owner = 'alice' AND name = 'stray'")
        result = stack.clients.git("clone", "-q", stack.url("alice/stray.git", "alice", PASSWORD),
                                   str(tmp_path / "stray"), check=False)
        assert result.returncode != 0
        assert "alice/stray is served by another storage shard (s2)" in result.stderr
        # A stranger learns nothing: the same as for a name that does not exist.
        stack.sql("UPDATE repos SET public = false WHERE owner = 'alice' AND name = 'stray'")
        assert stack.request("alice/stray.git/info/refs?service=git-upload-pack")[0] == \
            stack.request("alice/nothing.git/info/refs?service=git-upload-pack")[0] == 401
    finally:
        assert "started" in stack.supervisorctl("start", "routes")
    # Started again, it syncs at once: the repository is routed to s2.
    wait_until("the follower routes alice/stray to s2",
               lambda: stack.hostd("routes", "show").stdout.count("\n") == 3, timeout=30)


def test_the_follower_routes_new_and_deleted_repositories_without_a_sync(
        sharded: tuple[Stack, Settings]) -> None:
    stack, s2 = sharded
    _hostd_on(s2, "repo", "create", "alice/fresh", "--vcs", "git", "--shard", "s2")
    wait_until("alice/fresh is routed", lambda: "alice/fresh\ts2" in stack.hostd("routes", "show").stdout,
               timeout=30)
    _hostd_on(s2, "repo", "delete", "alice/fresh")
    wait_until("alice/fresh is no longer routed",
               lambda: "alice/fresh" not in stack.hostd("routes", "show").stdout, timeout=30)


CLIENTS = 8
#: Pushes each client makes once the move is over (through the new route).
AFTER = 2
#: What a push refused by a move says. git prints the message of a refused
#: ref advertisement (GET info/refs); of a refused pack upload (POST) only the
#: status, so a push that was past its advertisement when the window opened
#: reads "HTTP 503" (and git exits non-zero: the client knows it did not land).
RETRYABLE = ("read-only for a few seconds", "was just moved", "served by another storage shard",
             "The requested URL returned error: 503")


def _pushes(stack: Stack, work: Path, branch: str, moved: threading.Event, accepted: list[str],
            failures: list[str], retried: list[str]) -> None:
    """Commit and push to ``branch`` until ``AFTER`` pushes after the move, retrying what a move asks to retry."""
    git = stack.clients.git
    after = 0
    while after < AFTER:
        after += moved.is_set()
        (work / branch).write_text(f"{branch} {len(accepted)}\n")
        git("commit", "-q", "-a", "-m", f"{branch} {len(accepted)}", cwd=work)
        for _attempt in range(100):
            result = git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, check=False)
            if result.returncode == 0:
                accepted.append(git("rev-parse", "HEAD", cwd=work).stdout.strip())
                break
            reasons = [reason for reason in RETRYABLE if reason in result.stderr]
            if not reasons:
                failures.append(result.stderr)
                return
            retried.extend(reasons)
            time.sleep(0.2)
        else:
            failures.append(f"{branch}: never accepted")
            return


def test_a_repository_moves_while_clients_push_and_loses_nothing(
        sharded: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, s2 = sharded
    _hostd_on(s2, "repo", "create", "alice/busy", "--vcs", "git", "--shard", "s2")
    wait_until("alice/busy is routed", lambda: "alice/busy\ts2" in stack.hostd("routes", "show").stdout, timeout=30)
    git, url = stack.clients.git, stack.url("alice/busy.git", "alice", PASSWORD)
    seed = tmp_path / "seed"
    git("clone", "-q", url, str(seed))
    (seed / "README").write_text("busy\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    works = []
    for client in range(CLIENTS):
        works.append(tmp_path / f"c{client}")
        git("clone", "-q", url, str(works[-1]))
        (works[-1] / f"c{client}").write_text("start\n")
        git("add", ".", cwd=works[-1])
    accepted: dict[str, list[str]] = {f"c{c}": [] for c in range(CLIENTS)}
    failures: list[str] = []
    retried: list[str] = []
    done = threading.Event()
    pushers = [threading.Thread(target=_pushes,
                                args=(stack, works[c], f"c{c}", done, accepted[f"c{c}"], failures, retried))
               for c in range(CLIENTS)]
    for pusher in pushers:
        pusher.start()
    try:
        wait_until("every client pushed", lambda: all(accepted.values()), timeout=120)
        moved = stack.hostd("repo", "move", "alice/busy", "default", "--from", str(s2.repo_root)).stdout
    finally:
        done.set()
        for pusher in pushers:
            pusher.join(timeout=300)
    assert failures == []
    print(moved.strip(), f"({sum(map(len, accepted.values()))} pushes accepted; retried: {Counter(retried)})")
    window = float(re.search(r"read-only for ([0-9.]+) s", moved)[1])  # type: ignore[index]
    assert window < 5, moved
    new = stack.settings.repo_root / "alice" / "busy.git"
    # Every push a client was told landed is on the new shard: each branch at its last accepted commit.
    for branch, commits in accepted.items():
        assert len(commits) > AFTER
        assert git("-C", str(new), "rev-parse", f"refs/heads/{branch}").stdout.strip() == commits[-1]
    assert git("-C", str(new), "fsck", "--strict").returncode == 0
    assert stack.sql("SELECT shard, moving_to FROM repos WHERE name = 'busy'") == [("default", None)]
    assert not (s2.repo_root / "alice" / "busy.git").exists()
    assert list((s2.repo_root / ".moved").iterdir())
    # The route map followed: alice/busy is home now.
    wait_until("alice/busy is no longer routed to s2",
               lambda: "alice/busy" not in stack.hostd("routes", "show").stdout, timeout=30)
    assert "moved from shard s2 to default" in moved
