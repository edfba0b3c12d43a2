"""``make cluster-measure``: what one request costs each host of the lab, for the README's capacity model.

Runs on the lab (built first if it is not up, and removed afterwards). The
repositories are the benchmark's flask-sized inputs (:mod:`tests.bench.repogen`),
pushed to shard s2 through lb1. Each operation runs ``runs`` times, one
client at a time, through lb1; for each it reports the CPU seconds the
processes of each host took (user + system, children included, from
``/proc``: the shard's pools and the git and hg processes they run,
HAProxy, the web pool, PostgreSQL, memcached), the memcached commands, the
bytes the client received and the wall time. Per-request costs, not
throughput: the capacity model divides a host's cores by them.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hostd.settings import PROJECT_ROOT
from tests.bench.repogen import ensure_inputs
from tests.polling import wait_until

from .check import Clients, set_up
from .lab import MEMCACHED_PORT, Lab

SHARD = "s2"
BALANCER = "lb1"
HOSTS = ("lb1", SHARD, "web", "pg", "mc1", "mc2", "mc3")
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(lab: Lab, host: str) -> float:
    """CPU seconds of every process in the host's namespace, with their reaped children's."""
    total = 0
    for pid in lab.namespace_pids(host):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / _TICK


def _memcached_commands(lab: Lab) -> int:
    total = 0
    for name in ("mc1", "mc2", "mc3"):
        with socket.create_connection((lab.address(name), MEMCACHED_PORT), timeout=5) as conn:
            conn.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += conn.recv(65536)
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("cmd_get", "cmd_set", "cmd_touch", "incr_hits", "incr_misses",
                                                 "decr_hits", "decr_misses", "delete_hits", "delete_misses"):
                total += int(parts[2])
    return total


@dataclass(frozen=True, slots=True)
class Cost:
    """One operation's median cost per run."""

    name: str
    cpu: dict[str, float]
    memcached: float
    received: float
    wall: float

    def row(self) -> str:
        cells = [f"{self.cpu[host] * 1000:.1f}" for host in HOSTS]
        return (f"| {self.name} | {' | '.join(cells)} | {self.memcached:.1f} | {self.received / 1024:.0f} |"
                f" {self.wall * 1000:.0f} |")


def measure(lab: Lab, name: str, runs: int, operation: Callable[[int], int]) -> Cost:
    """``operation(i)`` returns the bytes the client received. CPU and memcached commands are the
    totals over ``runs`` divided by ``runs`` (the kernel counts CPU in 10 ms ticks: one run alone
    reads 0 or 10); bytes and wall time are medians."""
    operation(-1)  # warm: caches, connections, the first pack
    time.sleep(0.3)
    before = {host: _cpu(lab, host) for host in HOSTS}
    commands = _memcached_commands(lab)
    received: list[int] = []
    walls: list[float] = []
    for i in range(runs):
        started = time.monotonic()
        received.append(operation(i))
        walls.append(time.monotonic() - started)
    time.sleep(0.5)  # the last child's exit
    after = {host: _cpu(lab, host) for host in HOSTS}
    return Cost(name, {host: (after[host] - before[host]) / runs for host in HOSTS},
                (_memcached_commands(lab) - commands) / runs, statistics.median(received), statistics.median(walls))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_measurements(lab: Lab, runs: int) -> list[Cost]:
    work = Path(tempfile.mkdtemp(prefix="hostd-cluster-measure-"))
    try:
        clients = Clients(lab, work)
        set_up(lab, clients)
        inputs = ensure_inputs(PROJECT_ROOT / "var" / "bench" / "inputs", large=False)
        stamp = int(time.time())
        git_repo, hg_repo = f"alice/flask-{stamp}", f"alice/flask-hg-{stamp}"
        lab.hostd(SHARD, "repo", "create", git_repo, "--vcs", "git", "--shard", SHARD)
        lab.hostd(SHARD, "repo", "create", hg_repo, "--vcs", "hg", "--shard", SHARD)
        wait_until("routes", lambda: f"{git_repo}\t{SHARD}" in lab.hostd(BALANCER, "routes", "show").stdout,
                   timeout=60, interval=0.3)
        git_url, hg_url = clients.url(BALANCER, git_repo), clients.url(BALANCER, hg_repo, "hg")
        clients.git("-C", str(inputs.flask_git), "push", "-q", git_url, "refs/heads/*:refs/heads/*",
                    "refs/tags/*:refs/tags/*", timeout=600)
        clients.hg("-R", str(inputs.flask_hg), "push", "-q", hg_url, timeout=600, check=False)
        pusher = work / "pusher"
        clients.git("clone", "-q", git_url, str(pusher))

        def clone(vcs: str, url: str, store: str) -> Callable[[int], int]:
            def run(i: int) -> int:
                target = work / f"{vcs}{i}"
                if vcs == "git":
                    clients.git("clone", "-q", "--no-checkout", url, str(target))
                else:
                    clients.hg("clone", "-q", "-U", url, str(target))
                size = _size(target / store)
                shutil.rmtree(target)
                return size
            return run

        def fetch_git(_: int) -> int:
            clients.git("fetch", "-q", cwd=pusher)
            return 0

        def push_git(i: int) -> int:
            for n in range(10):
                (pusher / "measure.txt").write_text(f"{stamp} {i} {n}\n")
                clients.git("add", "measure.txt", cwd=pusher)
                clients.git("commit", "-q", "-m", f"measure {i} {n}", cwd=pusher)
            clients.git("push", "-q", "origin", "HEAD", cwd=pusher)
            return 0

        def page(_: int) -> int:
            connection = lab.connect(BALANCER, timeout=30)
            try:
                connection.request("GET", "/")
                return len(connection.getresponse().read())
            finally:
                connection.close()

        return [
            measure(lab, "git no-op fetch", runs * 4, fetch_git),
            measure(lab, "git clone (flask-sized)", runs, clone("git", git_url, ".git/objects")),
            measure(lab, "git push of 10 commits", runs, push_git),
            measure(lab, "hg clone (flask-sized)", runs, clone("hg", hg_url, ".hg/store")),
            measure(lab, "web front page (new TLS connection)", runs * 10, page),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(lab: Lab, runs: int = 10) -> int:
    built = not lab.is_up()
    if built:
        lab.up()
    try:
        costs = run_measurements(lab, runs)
    finally:
        if built:
            lab.down()
    print(f"\nOne client at a time, through {BALANCER}: CPU ms and memcached commands per operation (totals over"
          f" {runs} runs, 4x for fetches, 10x for pages, divided by the runs), median KiB received and wall ms.\n")
    print(f"| operation | {' | '.join(f'{h} CPU' for h in HOSTS)} | memcached commands | received KiB | wall ms |")
    print("| --- |" + " ---: |" * (len(HOSTS) + 3))
    for cost in costs:
        print(cost.row())
    return 0


if __name__ == "__main__":
    sys.exit(main(Lab.from_env()))
