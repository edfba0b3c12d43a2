"""Fault injection against the real stack (``make chaos``).

Each scenario breaks one thing, drives the real git and hg clients through
HAProxy meanwhile, restores the stack and prints what was broken, what the
clients saw, and the evidence that nothing was lost. Clones that must still
be running when the fault happens go through a proxy that relays at 1 MB/s,
so a 10 MB clone takes ~10 s on any machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostd.ops import pooladmin
from hostd.ops import stack as stackmod
from hostd.settings import PROJECT_ROOT
from tests.chaos.conftest import BIG_BYTES, OWNER, PASSWORD, Repos
from tests.chaos.tools import (
    BothWays,
    LogMark,
    Report,
    alive,
    children,
    get,
    haproxy_statuses,
    kill_client,
    last_line,
    pool_master,
    sending,
    spawn,
    supervisorctl,
)
from tests.e2e.stackfixture import VENV_BIN, Stack
from tests.e2e.test_operations import Worker
from tests.polling import wait_until
from tests.ports import free_ports

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

RATE = 1024 * 1024
HUGE_BYTES = 48 << 20
_ALARMS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
HG = str(VENV_BIN / "hg")


@pytest.fixture
def proxy(stack: Stack) -> Iterator[BothWays]:
    running = BothWays((stack.settings.bind, stack.settings.ports.https), RATE)
    yield running
    running.close()


def git_clone(stack: Stack, url: str, dest: Path, proxy: BothWays | None = None) -> subprocess.Popen[str]:
    options = ["-c", f"http.proxy={proxy.url}"] if proxy else []
    return spawn(stack, "git", *options, "clone", "-q", url, str(dest))


def hg_clone(stack: Stack, url: str, dest: Path, proxy: BothWays | None = None) -> subprocess.Popen[str]:
    # hg bypasses a proxy for 127.0.0.1 unless told to "always" use it.
    options = ["--config", f"http_proxy.host=127.0.0.1:{proxy.port}", "--config", "http_proxy.always=True"]
    options = options if proxy else []
    return spawn(stack, HG, *options, "clone", "-q", url, str(dest))


def finish(process: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_client(process)
        raise AssertionError(f"{process.args} still running after {timeout}s") from None
    return process.returncode, err


def check_git_big(stack: Stack, repos: Repos, dest: Path) -> str:
    head = stack.clients.git("rev-parse", "HEAD", cwd=dest).stdout.strip()
    assert head == repos.git_big_head
    assert sum(f.stat().st_size for f in dest.glob("blob*.bin")) == BIG_BYTES
    return f"{dest.name}: head {head[:12]}, {BIG_BYTES >> 20} MB intact"


def check_hg_big(stack: Stack, repos: Repos, dest: Path) -> str:
    node = stack.clients.hg("log", "-r", ".", "-T", "{node}", cwd=dest).stdout.strip()
    assert node == repos.hg_big_node
    assert sum(f.stat().st_size for f in dest.glob("blob*.bin")) == BIG_BYTES
    stack.clients.hg("verify", "-q", cwd=dest)
    return f"{dest.name}: tip {node[:12]}, {BIG_BYTES >> 20} MB, hg verify clean"


def push_one(stack: Stack, vcs: str, url: str, work: Path, name: str) -> str:
    """Clone, commit one file, push; the new commit's id."""
    if vcs == "git":
        git = stack.clients.git
        git("clone", "-q", url, str(work))
        (work / name).write_text(name + "\n")
        git("add", name, cwd=work)
        git("commit", "-q", "-m", name, cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).stdout.strip()
    hg = stack.clients.hg
    hg("clone", "-q", url, str(work))
    (work / name).write_text(name + "\n")
    hg("commit", "-A", "-q", "-m", name, cwd=work)
    hg("push", "-q", url, cwd=work)
    return hg("log", "-r", ".", "-T", "{node}", cwd=work).stdout.strip()


def ensure_healthy(stack: Stack) -> None:
    """Put whatever a scenario stopped back, and wait until every pool answers."""
    for program in ("memcached", "git", "hg", "web", "haproxy"):
        if "RUNNING" not in supervisorctl(stack, "status", program):
            supervisorctl(stack, "start", program)
    stackmod.wait_healthy(stack.settings, timeout=60)


@dataclass(frozen=True)
class Huge:
    """A git repository larger than the kernel and HAProxy buffer between a
    worker and HAProxy on loopback (~10 MB): a throttled clone of it keeps its
    worker sending, so killing that worker really cuts the clone."""

    url: str
    head: str


@pytest.fixture(scope="module")
def huge(stack: Stack, repos: Repos, tmp_path_factory: pytest.TempPathFactory) -> Huge:
    files = {f"blob{i}.bin": os.urandom(4 << 20) for i in range(HUGE_BYTES >> 22)}
    head = stack.seed_git(f"{OWNER}/huge", tmp_path_factory.mktemp("huge") / "work", files)
    return Huge(stack.url(f"{OWNER}/huge.git", OWNER, PASSWORD), head)


def check_git_huge(stack: Stack, huge: Huge, dest: Path) -> str:
    head = stack.clients.git("rev-parse", "HEAD", cwd=dest).stdout.strip()
    assert head == huge.head
    assert sum(f.stat().st_size for f in dest.glob("blob*.bin")) == HUGE_BYTES
    return f"{dest.name}: head {head[:12]}, {HUGE_BYTES >> 20} MB intact"


def streaming_worker(stack: Stack, workers: list[int]) -> int:
    """The worker sending a throttled clone right now: its send queue stays full."""
    wait_until("a worker's send queue fills", lambda: max(sending(workers).values()) > 0, 15)
    queued = sending(workers)
    return max(workers, key=lambda pid: queued[pid])


@pytest.fixture(autouse=True)
def restored(stack: Stack) -> Iterator[None]:
    """Every scenario starts and leaves the stack whole, so they are independent."""
    ensure_healthy(stack)
    yield
    ensure_healthy(stack)
    stack.forget_failed_logins()


# --- 1 -------------------------------------------------------------------------------------

def test_web_pool_stopped(stack: Stack, repos: Repos, report: Report, tmp_path: Path) -> None:
    supervisorctl(stack, "stop", "web")
    report.broken.append("web pool stopped (supervisorctl stop web)")
    page = get(stack, "/")
    wait_until("HAProxy marks web1 DOWN", lambda: pooladmin.server(stack.settings, "web", "web1").state == "DOWN", 15)
    report.saw.append(f"a web page answered {page}")
    for vcs, url in (("git", repos.git_small), ("hg", repos.hg_small)):
        node = push_one(stack, vcs, url, tmp_path / vcs, f"while-web-down-{vcs}")
        again = tmp_path / f"{vcs}-again"
        if vcs == "git":
            stack.clients.git("clone", "-q", url, str(again))
            assert stack.clients.git("rev-parse", "HEAD", cwd=again).stdout.strip() == node
        else:
            stack.clients.hg("clone", "-q", url, str(again))
            assert stack.clients.hg("log", "-r", "tip", "-T", "{node}", cwd=again).stdout.strip() == node
        report.saw.append(f"{vcs} clone+push+clone ok")
        report.evidence.append(f"pushed {vcs} {node[:12]} is in a fresh clone")
    assert page == 503
    report.evidence.append("HAProxy: web/web1 DOWN, git1 and hg1 UP throughout")
    assert pooladmin.server(stack.settings, "git", "git1").state == "UP"
    assert pooladmin.server(stack.settings, "hg", "hg1").state == "UP"


# --- 2 -------------------------------------------------------------------------------------

def start_gunicorn(stack: Stack, address: str, directory: Path, name: str) -> Worker:
    """A second git pool on ``address``, like supervisord's; waits for /healthz."""
    env = stackmod.environment(stack.settings)
    directory.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(directory)
    log = directory / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", str(PROJECT_ROOT / "deploy" / "gunicorn.conf.py"),
             "--bind", address, "--name", f"hostd-{name}", "hostd.serve.wsgi:git_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(process, address, log)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return process.poll() is not None  # stop waiting; reported below

    wait_until(f"{name} answers /healthz", healthy, 30)
    assert process.poll() is None, log.read_text()
    return worker


def test_git_worker_killed_during_clone(stack: Stack, repos: Repos, huge: Huge, proxy: BothWays, report: Report,
                                       tmp_path: Path) -> None:
    settings = stack.settings
    # a) One gunicorn worker process of the supervised pool, SIGKILLed mid-clone.
    master = pool_master(stack, "git")
    workers = children(master)
    assert len(workers) == settings.workers
    slow = git_clone(stack, huge.url, tmp_path / "cut", proxy)
    wait_until("the pack streams", lambda: proxy.streaming(256 << 10) == 1, 30)
    victim = streaming_worker(stack, workers)
    os.kill(victim, signal.SIGKILL)
    report.broken.append(f"git worker {victim} (of master {master}) SIGKILLed while streaming a "
                         f"{HUGE_BYTES >> 20} MB clone")
    code, err = finish(slow)
    report.saw.append(f"the clone in flight exited {code}: {last_line(err)}")
    assert code != 0
    retry = git_clone(stack, huge.url, tmp_path / "retry")
    assert finish(retry)[0] == 0
    report.saw.append("its retry succeeded")
    report.evidence.append(check_git_huge(stack, huge, tmp_path / "retry"))
    took = wait_until("the master replaces the worker",
                      lambda: len(children(master)) == settings.workers and victim not in children(master), 30)
    report.evidence.append(f"master {master} had forked a replacement by then (+{took:.1f}s) "
                           f"(workers {workers} -> {children(master)}); git1 stays "
                           f"{pooladmin.server(settings, 'git', 'git1').state} (the pool, HAProxy's unit, lives)")

    # b) A whole server of the git backend killed mid-clone: HAProxy marks it DOWN.
    [port] = free_ports(1)
    address = f"127.0.0.1:{port}"
    git2 = start_gunicorn(stack, address, tmp_path / "git2", "git2")
    try:
        stack.hostd("pool", "add", "git", "git2", address)
        stack.hostd("pool", "drain", "git", "git1")
        slow = git_clone(stack, huge.url, tmp_path / "cut2", proxy)
        wait_until("the pack streams from git2", lambda: proxy.streaming(256 << 10) == 2, 30)
        stack.hostd("pool", "ready", "git", "git1")
        git2.kill()
        report.broken.append(f"HAProxy server git2 ({address}, a second pool) SIGKILLed mid-clone")
        retry = git_clone(stack, huge.url, tmp_path / "retry2")
        took = wait_until("git2 DOWN", lambda: pooladmin.server(settings, "git", "git2").state == "DOWN", 15)
        code, err = finish(slow)
        report.saw.append(f"that clone exited {code}: {last_line(err)}")
        assert finish(retry)[0] == 0
        report.saw.append("its retry, started right after the kill, succeeded (via git1)")
        report.evidence.append(check_git_huge(stack, huge, tmp_path / "retry2"))
        report.evidence.append(f"HAProxy marked git2 DOWN {took:.1f}s after the kill")
        git2 = start_gunicorn(stack, address, tmp_path / "git2", "git2")
        took = wait_until("git2 UP", lambda: pooladmin.server(settings, "git", "git2").state == "UP", 15)
        stack.hostd("pool", "drain", "git", "git1")
        before = pooladmin.server(settings, "git", "git2").total_sessions
        assert finish(git_clone(stack, repos.git_small, tmp_path / "on-git2"))[0] == 0
        assert pooladmin.server(settings, "git", "git2").total_sessions > before
        report.evidence.append(f"git2 restarted on {address}: UP again after {took:.1f}s and serving clones")
        stack.hostd("pool", "ready", "git", "git1")
        stack.hostd("pool", "remove", "git", "git2", "--timeout", "20")
    finally:
        git2.stop()
        for server in pooladmin.servers(settings, "git"):
            if server.name == "git1":
                pooladmin.ready(settings, "git", "git1")
            else:
                pooladmin.remove(settings, "git", server.name, timeout=20)


# --- 3 -------------------------------------------------------------------------------------

def test_memcached_stopped(stack: Stack, repos: Repos, report: Report, tmp_path: Path) -> None:
    logs = {pool: LogMark(stack.settings.log_dir / f"{pool}.log") for pool in ("git", "hg", "web")}
    haproxy = LogMark(stack.settings.log_dir / "haproxy.log")
    supervisorctl(stack, "stop", "memcached")
    report.broken.append("memcached stopped (supervisorctl stop memcached)")

    refs = f"/{OWNER}/small.git/info/refs?service=git-upload-pack"
    caps = f"/{OWNER}/hsmall?cmd=capabilities"
    calls = ([(refs, OWNER, PASSWORD, 200)] * 100 + [(caps, OWNER, PASSWORD, 200)] * 50
             + [(refs, OWNER, "wrong password", 401)] * 10 + [(refs, None, None, 401)] * 20
             + [("/", None, None, 200)] * 20)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda c: get(stack, c[0], c[1], c[2],
                                               {"Accept": "application/mercurial-0.1"} if "cmd=" in c[0] else {}),
                                 calls))
    wrong = [(c[0], c[3], s) for c, s in zip(calls, statuses, strict=True) if c[3] != s]
    report.saw.append(f"{len(calls)} requests: {sum(s == 200 for s in statuses)} x 200, "
                      f"{sum(s == 401 for s in statuses)} x 401 (wrong or no password), {len(wrong)} unexpected")
    assert wrong == []
    flags = stack.hostd("flag", "list").stdout
    report.saw.append("hostd flag list ok")
    nodes = [push_one(stack, vcs, url, tmp_path / vcs, f"while-memcached-down-{vcs}")
             for vcs, url in (("git", repos.git_small), ("hg", repos.hg_small))]
    report.saw.append("git and hg clone+push ok")
    assert "read_only\toff" in flags

    time.sleep(0.5)  # let the pools' log lines reach their files
    written = {pool: mark.lines() for pool, mark in logs.items()}
    total = sum(len(lines) for lines in written.values())
    # Per request: gunicorn's access line and singlemalt's decision (INFO). An
    # error storm would be warnings on every request, or a traceback.
    alarms = {pool: [line for line in lines if any(level in line for level in _ALARMS)]
              for pool, lines in written.items()}
    about = [line for lines in written.values() for line in lines if "memcache" in line.lower()]
    served = haproxy_statuses(haproxy.lines())
    statuses_5xx = [(server, status) for server, status in served if status >= 500]
    requests = len(served)
    report.evidence.append(
        f"pushed {nodes[0][:12]} (git) and {nodes[1][:12]} (hg); pools logged {total} lines for "
        f"{requests} requests ({total / requests:.1f}/request: access line + decision); warnings or worse: "
        + ", ".join(f"{pool} {len(lines)}" for pool, lines in alarms.items())
        + f"; {len(about)} lines mention memcached; HAProxy logged {len(statuses_5xx)} 5xx")
    assert statuses_5xx == []
    assert len(about) < 10, "\n".join(about[:20])
    assert sum(len(lines) for lines in alarms.values()) < 10, alarms
    assert total < 3 * requests
    assert not any("RecursionError" in line for lines in written.values() for line in lines)


# --- 4 -------------------------------------------------------------------------------------

def test_sigabrt_to_git_master_during_clone(stack: Stack, huge: Huge, proxy: BothWays, report: Report,
                                           tmp_path: Path) -> None:
    old = pool_master(stack, "git")
    workers = children(old)
    slow = git_clone(stack, huge.url, tmp_path / "cut", proxy)
    wait_until("the pack streams", lambda: proxy.streaming(256 << 10) == 1, 30)
    sender = streaming_worker(stack, workers)
    os.kill(old, signal.SIGABRT)
    killed_at = time.monotonic()
    report.broken.append(f"SIGABRT to the git pool's gunicorn master {old} while its worker {sender} "
                         f"streamed a {HUGE_BYTES >> 20} MB clone")
    gone = wait_until("every old worker exits", lambda: not any(alive(pid) for pid in workers), 20)
    new = wait_until("supervisord restarts the pool", lambda: pool_master(stack, "git") not in (0, old), 60)
    stackmod.wait_healthy(stack.settings, timeout=60)
    healthy_after = time.monotonic() - killed_at
    code, err = finish(slow)
    report.saw.append(f"the clone in flight exited {code}: {last_line(err)}")
    reap = stack.hostd("reap", "--dry-run").stdout.strip()
    retry = git_clone(stack, huge.url, tmp_path / "retry")
    assert finish(retry)[0] == 0
    report.saw.append("its retry succeeded")
    report.evidence.append(
        f"all old workers gone {gone:.1f}s after the abort (PDEATHSIG, then the 5 s orphan watchdog); new "
        f"master {pool_master(stack, 'git')} {new:.1f}s after, stack healthy {healthy_after:.1f}s after; "
        f"hostd reap --dry-run: {reap!r}; " + check_git_huge(stack, huge, tmp_path / "retry"))
    assert reap == f"no orphaned workers of {stack.settings.data_dir}"
    assert gone < 15


# --- 5 -------------------------------------------------------------------------------------

def test_haproxy_reload_during_clones(stack: Stack, repos: Repos, proxy: BothWays, report: Report,
                                      tmp_path: Path) -> None:
    clones = [(check_git_big, tmp_path / f"git{i}", git_clone(stack, repos.git_big, tmp_path / f"git{i}", proxy))
              for i in range(3)]
    clones += [(check_hg_big, tmp_path / f"hg{i}", hg_clone(stack, repos.hg_big, tmp_path / f"hg{i}", proxy))
               for i in range(2)]
    wait_until("five clones stream", lambda: proxy.streaming(256 << 10) >= 5, 30)
    old = pooladmin.worker_pid(stack.settings)
    stackmod.reload_haproxy(stack.settings)
    new = pooladmin.worker_pid(stack.settings)
    report.broken.append(f"HAProxy reloaded (worker {old} -> {new}) with 3 git and 2 hg clones in flight")
    assert new != old
    assert proxy.streaming(BIG_BYTES) == 0, "the clones should still be running across the reload"
    codes = [finish(process)[0] for _, _, process in clones]
    report.saw.append(f"exit codes {codes}")
    assert codes == [0] * 5
    report.evidence.extend(check(stack, repos, dest) for check, dest, _ in clones)


# --- 6 -------------------------------------------------------------------------------------

def prepare(stack: Stack, vcs: str, url: str, work: Path, count: int) -> list[Path]:
    """``count`` clones, each with one new commit (copies of one clone: fast)."""
    base = work / f"{vcs}-base"
    if vcs == "git":
        stack.clients.git("clone", "-q", url, str(base))
    else:
        stack.clients.hg("clone", "-q", url, str(base))
    clones = []
    for i in range(count):
        clone = work / f"{vcs}{i}"
        shutil.copytree(base, clone, symlinks=True)
        (clone / f"{vcs}-{i}").write_text(f"{vcs}-{i}\n")
        if vcs == "git":
            stack.clients.git("add", f"{vcs}-{i}", cwd=clone)
            stack.clients.git("commit", "-q", "-m", f"{vcs}-{i}", cwd=clone)
        else:
            stack.clients.hg("commit", "-A", "-q", "-m", f"{vcs}-{i}", cwd=clone)
        clones.append(clone)
    return clones


def head(stack: Stack, vcs: str, clone: Path) -> str:
    if vcs == "git":
        return stack.clients.git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    return stack.clients.hg("log", "-r", ".", "-T", "{node}", cwd=clone).stdout.strip()


def leftovers(repo: Path) -> list[str]:
    """Files an interrupted push can leave behind (what ``hostd maintain`` looks for)."""
    patterns = ("refs/**/*.lock", "*.lock", "objects/tmp_pack_*", "objects/pack/tmp*", "objects/pack/.tmp-*",
                "objects/tmp_objdir-incoming-*", ".hg/store/journal*", ".hg/store/lock", ".hg/wlock")
    return sorted(str(p.relative_to(repo)) for pattern in patterns for p in repo.glob(pattern))


def test_concurrent_pushes_and_a_killed_client(stack: Stack, repos: Repos, proxy: BothWays, report: Report,
                                               tmp_path: Path) -> None:
    git_repo = stack.settings.repo_root / OWNER / "small.git"
    hg_repo = stack.settings.repo_root / OWNER / "hsmall"
    haproxy = LogMark(stack.settings.log_dir / "haproxy.log")
    # The client killed mid-push: 8 MB, uploaded at 1 MB/s through the proxy.
    doomed = tmp_path / "doomed"
    stack.clients.git("clone", "-q", repos.git_small, str(doomed))
    (doomed / "big.bin").write_bytes(os.urandom(8 << 20))
    stack.clients.git("add", "big.bin", cwd=doomed)
    stack.clients.git("commit", "-q", "-m", "doomed", cwd=doomed)
    doomed_head = head(stack, "git", doomed)
    clones = {vcs: prepare(stack, vcs, url, tmp_path, 20) for vcs, url in (("git", repos.git_small),
                                                                          ("hg", repos.hg_small))}
    commits = {vcs: [head(stack, vcs, clone) for clone in clones[vcs]] for vcs in clones}

    push = spawn(stack, "git", "-c", f"http.proxy={proxy.url}", "push", "-q", "origin", "HEAD:main", cwd=doomed)
    wait_until("the doomed push uploads", lambda: proxy.uploaded > 1 << 20, 30)
    pushes = [spawn(stack, "git", "push", "-q", "origin", "HEAD:main", cwd=clone) for clone in clones["git"]]
    pushes += [spawn(stack, HG, "push", "-q", repos.hg_small, cwd=clone) for clone in clones["hg"]]
    kill_client(push)
    report.broken.append(f"20 git and 20 hg clients push to one branch at once; meanwhile a git client is "
                         f"SIGKILLed after uploading {proxy.uploaded >> 20} of its 8 MB")
    results = [finish(process, timeout=120) for process in pushes]
    accepted = {vcs: {c for c, (code, _) in zip(commits[vcs], results[i * 20:(i + 1) * 20], strict=True)
                      if code == 0} for i, vcs in enumerate(("git", "hg"))}
    refusals = sorted({last_line(err)[:80] for code, err in results if code != 0})
    report.saw.append(f"git: {len(accepted['git'])} of 20 pushes accepted, hg: {len(accepted['hg'])} of 20; "
                      f"the rest refused: {refusals}")
    assert accepted["git"] and accepted["hg"]

    maintain = stack.hostd("maintain").stdout
    assert "FAILED" not in maintain
    git = stack.clients.git
    history = set(git("rev-list", "main", cwd=git_repo).stdout.split())
    fsck = git("fsck", "--full", "--strict", cwd=git_repo, check=False)
    hg_history = set(stack.clients.hg("log", "-T", "{node}\n", cwd=hg_repo).stdout.split())
    verify = stack.clients.hg("verify", "-q", cwd=hg_repo, check=False)
    left = leftovers(git_repo) + leftovers(hg_repo)
    statuses_5xx = [s for s in haproxy_statuses(haproxy.lines()) if s[1] >= 500]
    report.evidence.append(
        f"every accepted commit is in the server's history and no refused one is (git {len(history)} "
        f"commits, hg {len(hg_history)} changesets); the killed push's commit absent; git fsck --full "
        f"--strict: exit {fsck.returncode}; hg verify: exit {verify.returncode}; after hostd maintain, "
        f"leftovers: {left or 'none'}; HAProxy 5xx: {len(statuses_5xx)}")
    assert accepted["git"] <= history and not (set(commits["git"]) - accepted["git"]) & history
    assert accepted["hg"] <= hg_history and not (set(commits["hg"]) - accepted["hg"]) & hg_history
    assert doomed_head not in history
    assert fsck.returncode == 0, fsck.stderr
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert left == []
    assert statuses_5xx == []
