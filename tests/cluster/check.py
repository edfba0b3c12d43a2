"""``make cluster-check``: the multi-host lab proves the sharded, load-balanced installation.

Run on the lab of :mod:`tests.cluster.lab` (built first if it is not up, and
removed again afterwards), with the real git and hg clients in the root
namespace (the bridge's address, and a second one for the password guesser).
Exit 0 only if every check holds:

1. **Routes**: every case of haproxy/routes.txt, over HTTP/1.1 and HTTP/2,
   through each load balancer, reaches the backend it names (read from that
   HAProxy's own log line for the request's X-Request-ID). The table's
   repositories are created on the lab's shards (its home shard
   ``default`` is the lab's s1).
2. **A shard host stops**, as a gray failure (every process SIGSTOPped) and
   as a partition (its link down): both balancers see it down within
   moments (their 1 s health checks), then requests for its repositories
   get a 503 naming the shard in under 2 s, and every other shard's
   repositories clone and take pushes. A request already in flight when a
   host froze waits for it: it may resume, and a push is not cut because
   one check was late.
3. **A move under load**: a git and an hg repository each move to another
   shard while 8 clients push to them; no accepted push is missing on the new
   shard, ``git fsck --strict`` / ``hg verify`` are clean there, and the
   read-only window is under 5 s.
4. **A load balancer dies** (every process of lb1 SIGKILLed): lb2 serves
   clones and pushes on every shard, and the failed-login count a guesser
   (wrong passwords and tokens) built up on lb1 (memcached stopped, so singlemalt's own throttle fails
   open and HAProxy's guard is the brake) is enforced by lb2. lb1 is then
   started again.
5. **SSH** (:mod:`tests.cluster.sshcheck`): both balancers present the same
   host keys; the permission matrix of git and hg over SSH through each
   balancer, relayed to the repositories' shards, and the client's address
   in the shard's log.
"""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from hostd.ops.haproxy import command as haproxy_command
from hostd.settings import DEFAULT_SHARD, PROJECT_ROOT
from tests.haproxy.http_clients import Endpoint, ProtocolError
from tests.haproxy.replay import TRANSPORTS, send_case
from tests.haproxy.route_table import RouteCase, load_table
from tests.polling import wait_until

from .lab import BALANCERS, BY_NAME, HOME_SHARD, PORTS, SHARDS, Lab, LabError, run
from .sshcheck import check_ssh

PASSWORD = "lab password 1"
USERS = ("alice", "dana", "carol")
#: Pushers per moved repository, and pushes each makes once the move is over.
CLIENTS = 8
AFTER = 2
#: What a push refused by a move says (tests/e2e/test_shards.py explains each).
RETRYABLE = ("read-only for a few seconds", "was just moved", "served by another storage shard",
             "returned error: 503", "HTTP Error 503", "abort: HTTP Error 503")
#: The answer of a stopped shard must come this fast.
FAIL_FAST_SECONDS = 2.0
WINDOW_SECONDS = 5.0
#: haproxy.cfg: the guard answers 429 once more than 600 failed logins a minute came from one address.
FLOOD_GUARD = 600
GUESSER_OCTET = 2
_ID = re.compile(r"^\S+ \[[^\]]+\] \S+ (?P<backend>[^/\s]+)/\S+ .* id=(?P<id>[0-9a-f-]{36}) ", re.MULTILINE)


@dataclass
class Report:
    """What the checks found: one line each, and whether all held."""

    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def result(self, ok: bool, text: str) -> bool:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {text}")
        print(self.lines[-1], flush=True)
        self.failed += not ok
        return ok


class Clients:
    """The git and hg command lines, trusting the lab's CA, in a scratch directory."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work), "GIT_SSL_CAINFO": str(lab.ca_file), "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@example.test", "GIT_COMMITTER_NAME": "lab",
            "GIT_COMMITTER_EMAIL": "lab@example.test", "HGRCPATH": str(work / "hgrc"), "HGPLAIN": "1",
            "LANG": "C.UTF-8",
        }
        # hg keeps no password in a clone's default path: pushes log in with [auth].
        (work / "hgrc").write_text(f"[ui]\nusername = lab <lab@example.test>\n[web]\ncacerts = {lab.ca_file}\n"
                                   f"[auth]\nlab.prefix = *\nlab.username = alice\nlab.password = {PASSWORD}\n")

    def url(self, balancer: str, repo: str, vcs: str = "git", user: str = "alice") -> str:
        return self.lab.url(balancer, f"{repo}.git" if vcs == "git" else repo, user, PASSWORD.replace(" ", "%20"))

    def git(self, *args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self._run(["git", *args], cwd, check, timeout)

    def hg(self, *args: str, cwd: Path | None = None, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self._run(["hg", *args], cwd, check, timeout)

    def _run(self, command: list[str], cwd: Path | None, check: bool,
             timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, cwd=cwd or self.work, env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(command[:3])} failed: {result.stderr.strip()[-1500:]}")
        return result

    def clone_and_push(self, balancer: str, repo: str, vcs: str, tag: str) -> str | None:
        """Clone ``repo`` through ``balancer``, commit and push; None when both worked, else what failed."""
        target = Path(tempfile.mkdtemp(dir=self.work, prefix=f"{tag}-"))
        try:
            tool = self.git if vcs == "git" else self.hg
            result = tool("clone", "-q", self.url(balancer, repo, vcs), str(target / "w"), check=False)
            if result.returncode != 0:
                return f"clone: {result.stderr.strip()[-300:]}"
            (target / "w" / f"{tag}.txt").write_text(f"{tag} {target.name}\n")
            if vcs == "git":
                self.git("add", ".", cwd=target / "w")
                self.git("commit", "-q", "-m", tag, cwd=target / "w")
                result = self.git("push", "-q", "origin", "HEAD", cwd=target / "w", check=False)
            else:
                self.hg("commit", "-q", "-A", "-m", tag, cwd=target / "w")
                result = self.hg("push", "-q", cwd=target / "w", check=False)
            return None if result.returncode == 0 else f"push: {result.stderr.strip()[-300:]}"
        finally:
            shutil.rmtree(target, ignore_errors=True)


def _seed(clients: Clients, balancer: str, repo: str, vcs: str) -> None:
    failure = clients.clone_and_push(balancer, repo, vcs, "seed")
    if failure is not None:
        raise LabError(f"seeding {repo}: {failure}")


# --- set-up ----------------------------------------------------------------
def set_up(lab: Lab, clients: Clients) -> dict[str, tuple[str, str]]:
    """Users, the route table's repositories, and one git and one hg repository per shard: name -> (vcs, shard)."""
    for user in USERS:
        added = lab.hostd(HOME_SHARD, "user", "add", user, input=f"{PASSWORD}\n{PASSWORD}\n", check=False)
        if added.returncode != 0 and "exists" not in added.stderr:
            raise LabError(f"hostd user add {user}: {added.stderr.strip()}")
    repos: dict[str, tuple[str, str]] = {}
    table = load_table(PROJECT_ROOT / "haproxy" / "routes.txt")
    for repo, shard in table.routes:
        repos[str(repo)] = ("git", HOME_SHARD if shard == DEFAULT_SHARD else shard)
    for shard in SHARDS:
        repos[f"alice/git-{shard}"] = ("git", shard)
        repos[f"alice/hg-{shard}"] = ("hg", shard)
    listed = lab.hostd(HOME_SHARD, "repo", "list").stdout
    for name, (vcs, shard) in repos.items():
        if re.search(rf"^{re.escape(name)}\b", listed, re.MULTILINE):
            continue
        # A repository is created on a host of its shard: its directory is there.
        lab.hostd(shard, "repo", "create", name, "--vcs", vcs, "--shard", shard)
        owner = name.split("/")[0]
        if owner != "alice":
            lab.hostd(shard, "grant", "alice", name, "write")
    expected = {f"{name}\t{shard}" for name, (_, shard) in repos.items() if shard != HOME_SHARD}
    for balancer in BALANCERS:
        wait_until(f"{balancer} routes every repository", partial(_routes_include, lab, balancer, expected),
                   timeout=60, interval=0.5)
    for shard in SHARDS:
        for vcs in ("git", "hg"):
            _seed(clients, BALANCERS[0], f"alice/{vcs}-{shard}", vcs)
    return repos


def _routes_include(lab: Lab, balancer: str, lines: set[str]) -> bool:
    """Whether ``balancer``'s HAProxy routes as ``lines`` (``owner/name<TAB>shard``) say."""
    return lines <= set(lab.hostd(balancer, "routes", "show").stdout.splitlines())


# --- 1. routes ---------------------------------------------------------------
def _backend_of(lab: Lab, balancer: str, request_id: str) -> str:
    log = lab.data_dir(balancer) / "log" / "haproxy.log"
    found: dict[str, str] = {}

    def logged() -> bool:
        for match in _ID.finditer(log.read_text(errors="replace")):
            found[match["id"]] = match["backend"]
        return request_id in found

    wait_until(f"request {request_id} in {balancer}'s log", logged, timeout=10, interval=0.1)
    return found[request_id]


def _expected_backend(case: RouteCase) -> str:
    return case.pool if case.shard == DEFAULT_SHARD else f"{case.pool}-{case.shard}"


def check_routes(lab: Lab, report: Report) -> None:
    table = load_table(PROJECT_ROOT / "haproxy" / "routes.txt")
    for balancer in BALANCERS:
        endpoint = Endpoint(lab.address(balancer), PORTS.https, lab.ca_file)
        wrong: list[str] = []
        sent = 0
        for case in table.cases:
            for transport in TRANSPORTS:
                sent += 1
                try:
                    response = send_case(endpoint, case, transport)
                except (OSError, ProtocolError) as error:
                    wrong.append(f"{case.name} over {transport}: no response ({error})")
                    continue
                request_id = response.header("x-request-id")
                got = _backend_of(lab, balancer, request_id) if request_id else f"HTTP {response.status}, no id"
                if got != _expected_backend(case):
                    wrong.append(f"{case.describe()} over {transport}: expected {_expected_backend(case)}, got {got}")
        report.result(not wrong, f"routes through {balancer}: {sent - len(wrong)}/{sent} route-table requests"
                                 " reached the backend their case names" + "".join(f"\n      {w}" for w in wrong[:20]))


# --- 2. a shard host stops ------------------------------------------------------
def _get(lab: Lab, balancer: str, path: str, *, authorization: str | None = None,
         source: str | None = None) -> tuple[int | None, str, float]:
    """Status, body and seconds of one GET, as git sends it, on a new connection (None: no answer within 10 s)."""
    headers = {"User-Agent": "git/2.39.5"}
    if authorization is not None:
        headers["Authorization"] = authorization
    started = time.monotonic()
    connection = lab.connect(balancer, source=source)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace"), time.monotonic() - started
    except OSError as error:
        return None, str(error), time.monotonic() - started
    finally:
        connection.close()


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def _backends_up(lab: Lab, balancer: str, shard: str, *, any_up: bool = False) -> bool:
    """Whether ``balancer`` has both (``any_up``: either) of the shard's git and hg backends up."""
    stat = haproxy_command(lab.settings(balancer), "show stat -1 2 -1")
    pools = ("git", "hg") if shard == HOME_SHARD else (f"git-{shard}", f"hg-{shard}")
    rows = [line.split(",") for line in stat.splitlines() if line.split(",")[0] in pools]
    up = [row[17] == "UP" for row in rows]
    return len(rows) == 2 and (any(up) if any_up else all(up))


def check_shard_down(lab: Lab, clients: Clients, report: Report, how: str, stop: Callable[[str], object],
                     resume: Callable[[str], object]) -> None:
    victim = SHARDS[-1]
    others = [shard for shard in SHARDS if shard != victim]
    stop(victim)
    try:
        # Requests already in flight when a host freezes wait for it (it may
        # resume: a push is never cut because a check was late); the
        # balancers' health checks (1 s apart, one failure marks a shard
        # server down) stop sending it more.
        detected = wait_until(f"both balancers see {victim} down", lambda: not any(
            _backends_up(lab, b, victim, any_up=True) for b in BALANCERS), timeout=30, interval=0.05)
        answers = []
        for balancer in BALANCERS:
            for vcs in ("git", "hg"):
                repo = f"alice/{vcs}-{victim}"
                path = (f"/{repo}.git/info/refs?service=git-upload-pack" if vcs == "git"
                        else f"/{repo}?cmd=capabilities")
                status, body, seconds = _get(lab, balancer, path)
                answers.append((balancer, vcs, status, body, seconds))
        slow_or_wrong = [a for a in answers if a[2] != 503 or f"({victim}) is unavailable" not in a[3]
                         or a[4] >= FAIL_FAST_SECONDS]
        report.result(not slow_or_wrong, f"{how} of {victim}: seen down by both balancers"
                      f" {detected:.2f} s after it stopped; then its git and"
                      f" hg repositories got 503 with the reason in {', '.join(f'{a[4]:.2f}' for a in answers)} s"
                      + "".join(f"\n      {a[0]} {a[1]}: {a[2]} {a[3].strip()[:120]!r} in {a[4]:.2f} s"
                                for a in slow_or_wrong))
        failures = []
        done = 0
        for balancer in BALANCERS:
            for shard in others:
                for vcs in ("git", "hg"):
                    failure = clients.clone_and_push(balancer, f"alice/{vcs}-{shard}", vcs, f"{how[:4]}-{balancer}")
                    done += 1
                    if failure is not None:
                        failures.append(f"{balancer} {vcs}-{shard}: {failure}")
        report.result(not failures, f"{how} of {victim}: {done - len(failures)}/{done} clones and pushes of the"
                      f" other shards' repositories succeeded" + "".join(f"\n      {f}" for f in failures))
    finally:
        resume(victim)
        for balancer in BALANCERS:
            wait_until(f"{balancer} sees {victim} again", partial(_backends_up, lab, balancer, victim),
                       timeout=60, interval=0.5)


# --- 3. a move under load ---------------------------------------------------------
def _pusher(clients: Clients, vcs: str, work: Path, branch: str, moved: threading.Event, accepted: list[str],
            failures: list[str], retried: list[str]) -> None:
    """Commit and push to ``branch`` until ``AFTER`` pushes after the move, retrying what a move asks to retry."""
    try:
        _push_until_moved(clients, vcs, work, branch, moved, accepted, failures, retried)
    except (LabError, subprocess.SubprocessError) as error:
        failures.append(f"{branch}: {error}")


def _push_until_moved(clients: Clients, vcs: str, work: Path, branch: str, moved: threading.Event,
                      accepted: list[str], failures: list[str], retried: list[str]) -> None:
    after = 0
    while after < AFTER and not failures:
        after += moved.is_set()
        (work / branch).write_text(f"{branch} {len(accepted)}\n")
        if vcs == "git":
            clients.git("add", "-A", cwd=work)
            clients.git("commit", "-q", "-m", f"{branch} {len(accepted)}", cwd=work)
        else:
            clients.hg("commit", "-q", "-A", "-m", f"{branch} {len(accepted)}", cwd=work)
        for _attempt in range(200):
            if vcs == "git":
                result = clients.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, check=False)
            else:
                result = clients.hg("push", "-q", "--new-branch", "-b", branch, cwd=work, check=False)
            if result.returncode == 0 or (vcs == "hg" and result.returncode == 1
                                          and "no changes found" in result.stdout + result.stderr):
                head = (clients.git("rev-parse", "HEAD", cwd=work) if vcs == "git"
                        else clients.hg("log", "-r", ".", "-T", "{node}", cwd=work)).stdout.strip()
                accepted.append(head)
                break
            output = result.stdout + result.stderr
            reasons = [reason for reason in RETRYABLE if reason in output]
            if not reasons:
                failures.append(f"{branch}: {output.strip()[-500:]}")
                return
            retried.extend(reasons)
            if vcs == "hg":
                # A push refused part-way leaves hg sure of nothing: learn what landed.
                clients.hg("pull", "-q", cwd=work, check=False)
            time.sleep(0.2)
        else:
            failures.append(f"{branch}: never accepted")
            return


def check_move(lab: Lab, clients: Clients, report: Report, vcs: str) -> None:
    source, target = SHARDS[1], SHARDS[2]
    name = f"alice/busy-{vcs}-{int(time.time())}"
    lab.hostd(source, "repo", "create", name, "--vcs", vcs, "--shard", source)
    for balancer in BALANCERS:
        wait_until(f"{name} routed by {balancer}", partial(_routes_include, lab, balancer, {f"{name}\t{source}"}),
                   timeout=60, interval=0.3)
    _seed(clients, BALANCERS[0], name, vcs)
    works: list[Path] = []
    for client in range(CLIENTS):
        works.append(clients.work / f"{vcs}-c{client}")
        balancer = BALANCERS[client % len(BALANCERS)]
        if vcs == "git":
            clients.git("clone", "-q", clients.url(balancer, name, vcs), str(works[-1]))
        else:
            clients.hg("clone", "-q", clients.url(balancer, name, vcs), str(works[-1]))
            clients.hg("branch", "-q", f"c{client}", cwd=works[-1])
    accepted: dict[str, list[str]] = {f"c{c}": [] for c in range(CLIENTS)}
    failures: list[str] = []
    retried: list[str] = []
    moved = threading.Event()
    pushers = [threading.Thread(target=_pusher, args=(clients, vcs, works[c], f"c{c}", moved, accepted[f"c{c}"],
                                                      failures, retried)) for c in range(CLIENTS)]
    for pusher in pushers:
        pusher.start()
    output = ""
    try:
        wait_until("every client pushed", lambda: all(accepted.values()) or bool(failures), timeout=180)
        result = lab.hostd(target, "repo", "move", name, target, "--from", str(lab.settings(source).repo_root),
                           "--to", str(lab.settings(target).repo_root), check=False)
        output = (result.stdout + result.stderr).strip()
    finally:
        moved.set()
        for pusher in pushers:
            pusher.join(timeout=600)
    window = re.search(r"read-only for ([0-9.]+) s", output)
    seconds = float(window[1]) if window else float("inf")
    new = lab.settings(target).repo_root / (f"{name}.git" if vcs == "git" else name)
    lost = []
    for branch, commits in accepted.items():
        if not commits:
            lost.append(f"{branch}: nothing accepted")
            continue
        if vcs == "git":
            tip = clients.git("-C", str(new), "rev-parse", f"refs/heads/{branch}", check=False).stdout.strip()
            if tip != commits[-1]:
                lost.append(f"{branch}: last accepted {commits[-1][:12]}, new shard has {tip[:12] or 'nothing'}")
        else:
            missing = [node for node in commits
                       if clients.hg("-R", str(new), "log", "-r", node, "-T", "x", check=False).stdout != "x"]
            lost.extend(f"{branch}: {node[:12]} missing" for node in missing)
    integrity = (clients.git("-C", str(new), "fsck", "--strict", check=False) if vcs == "git"
                 else clients.hg("-R", str(new), "verify", "-q", check=False))
    total = sum(map(len, accepted.values()))
    report.result(
        not failures and not lost and seconds < WINDOW_SECONDS and integrity.returncode == 0
        and f"to {target}" in output,
        f"{vcs} move {source} -> {target} under {CLIENTS} pushers: read-only window {seconds:.2f} s, {total} pushes"
        f" accepted, {len(lost)} lost, {'fsck --strict' if vcs == 'git' else 'hg verify'}"
        f" {'clean' if integrity.returncode == 0 else 'FAILED'}; retried: {dict(Counter(retried))}"
        + "".join(f"\n      {line}" for line in [*failures, *lost, output][:12] if line))


# --- 4. a load balancer dies --------------------------------------------------------
@contextmanager
def _guesser_address(lab: Lab) -> Iterator[str]:
    """A second client address on the bridge (the first is for everyone else)."""
    address = str(lab.network.network_address + GUESSER_OCTET)
    run(["ip", "addr", "add", f"{address}/32", "dev", "hostdlab0"], check=False)
    try:
        yield address
    finally:
        run(["ip", "addr", "del", f"{address}/32", "dev", "hostdlab0"], check=False)


def _guess(lab: Lab, balancer: str, source: str, count: int, paths: list[str]) -> Counter[int]:
    """``count`` wrong credentials from ``source`` through ``balancer``, 8 connections at a time: statuses seen.

    Spread over ``paths`` (every shard's git and hg pools). HAProxy counts
    every 401 to a request that carried credentials, over a minute; a wrong
    password costs a pool an argon2 hash (0.1 s of a core here), so only
    every tenth guess is one (alice's); the others name no user (a token
    guesser), which the pools refuse without hashing, so that the guard's
    minute is reached on a slow machine too.
    """
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    remaining = [count]

    def worker() -> None:
        connection: http.client.HTTPSConnection | None = None
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
                number = remaining[0]
                path = paths[number % len(paths)]
            guess = f"alice:wrong-{number}" if number % 10 == 0 else f":guess-{number}"
            if connection is None:
                connection = lab.connect(balancer, source=source, timeout=30)
            try:
                connection.request("GET", path, headers={"Authorization": _basic(guess), "User-Agent": "git/2.39.5"})
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except OSError:
                status = 0
                connection = None
            with lock:
                statuses[status] += 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def _count_on(lab: Lab, balancer: str, source: str) -> int:
    """The failed-login count ``balancer``'s stick table holds for ``source`` (0: none)."""
    table = haproxy_command(lab.settings(balancer), f"show table https key ::ffff:{source}")
    match = re.search(r"gpc0=(\d+)", table)
    return int(match[1]) if match else 0


def check_balancer_dies(lab: Lab, clients: Clients, report: Report) -> None:
    victim, survivor = BALANCERS
    caches = [host.name for host in BY_NAME.values() if "cache" in host.roles]
    paths = [f"/alice/git-{shard}.git/info/refs?service=git-upload-pack" for shard in SHARDS] + \
        [f"/alice/hg-{shard}?cmd=capabilities" for shard in SHARDS]
    path = paths[0]
    with _guesser_address(lab) as guesser:
        for cache in caches:
            lab.signal_host(cache, signal.SIGSTOP)
        try:
            started = time.monotonic()
            statuses = _guess(lab, victim, guesser, FLOOD_GUARD + 80, paths)
            seconds = time.monotonic() - started
        finally:
            for cache in caches:
                lab.signal_host(cache, signal.SIGCONT)
        learned = _count_on(lab, victim, guesser)
        report.result(statuses[429] > 0, f"memcached stopped, {sum(statuses.values())} wrong credentials from"
                      f" {guesser} through {victim} in {seconds:.1f} s: {dict(statuses)}; {victim}'s count {learned}")
        shared = 0.0
        try:
            shared = wait_until(f"{survivor} learns the count", lambda: _count_on(lab, survivor, guesser) > FLOOD_GUARD,
                                timeout=10)
        except AssertionError:
            pass
        killed = lab.signal_host(victim, signal.SIGKILL)
        status, body, _ = _get(lab, survivor, path, authorization=_basic(f"alice:{PASSWORD}"), source=guesser)
        report.result(status == 429 and "failed authentication" in body,
                      f"{victim} killed ({killed} processes): {survivor} holds the guesser's count"
                      f" ({_count_on(lab, survivor, guesser)}, learned in {shared:.2f} s) and answers even the right"
                      f" password from it {status} {body.strip()[:60]!r}")
    failures = []
    done = 0
    for shard in SHARDS:
        for vcs in ("git", "hg"):
            done += 1
            failure = clients.clone_and_push(survivor, f"alice/{vcs}-{shard}", vcs, f"lbdown-{shard}")
            if failure is not None:
                failures.append(f"{vcs}-{shard}: {failure}")
    report.result(not failures, f"{victim} killed: {done - len(failures)}/{done} clones and pushes through"
                  f" {survivor} succeeded, on every shard" + "".join(f"\n      {f}" for f in failures))
    lab.restart(victim)


# --- all of it ------------------------------------------------------------------------
def check(lab: Lab) -> int:
    built = not lab.is_up()
    if built:
        print("the lab is not up: building it (make cluster)", flush=True)
        lab.up()
    print(lab.layout(), flush=True)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="hostd-cluster-check-"))
    try:
        clients = Clients(lab, work)
        set_up(lab, clients)
        check_routes(lab, report)
        check_shard_down(lab, clients, report, "gray failure (SIGSTOP)",
                         partial(lab.signal_host, signum=signal.SIGSTOP),
                         partial(lab.signal_host, signum=signal.SIGCONT))
        check_shard_down(lab, clients, report, "partition (link down)",
                         lambda host: lab.link(host, up=False), lambda host: lab.link(host, up=True))
        check_move(lab, clients, report, "git")
        check_move(lab, clients, report, "hg")
        check_balancer_dies(lab, clients, report)
        check_ssh(lab, report, work / "ssh")
    except (LabError, AssertionError, OSError, subprocess.SubprocessError) as error:
        report.result(False, f"the check could not go on: {error}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if built:
            lab.down()
    print(f"\ncluster-check: {'all checks hold' if not report.failed else f'{report.failed} FAILED'}"
          f" ({len(report.lines)} checks)")
    return 0 if not report.failed else 1
