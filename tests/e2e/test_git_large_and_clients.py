"""Big pushes, pushes over the size limit, interrupted pushes, and two more git clients.

- A push over ``HOSTD_MAX_PUSH_BYTES`` fails with the reason on the client's
  screen and leaves the repository exactly as it was (a separate stack with
  a 5 MiB limit). git sends pushes over ``http.postBuffer`` chunked (HTTP/1.1)
  or without a length (HTTP/2), so only the worker can measure them; the
  reason reaches git, dulwich and libgit2 in receive-pack's report.
- A push of 128 MiB of incompressible data lands over HTTP/1.1 and HTTP/2 and
  clones back byte for byte; the git pool's worker memory is measured meanwhile.
- A push whose client is killed mid-upload changes nothing, leaves no
  temporary pack, and ``hostd maintain`` finds the repository clean.
- dulwich's own client and libgit2 (pygit2) clone and push through HAProxy.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest

from hostd.git.cache import PACK_CACHE_DIR
from tests.e2e.sshclient import Key, SshClients, add_key
from tests.e2e.stackfixture import Stack, start_stack, stop_stack

PASSWORD = "lara's long password"
MiB = 1 << 20
LIMIT = 5 * MiB
HTTP_VERSIONS = ["HTTP/1.1", "HTTP/2"]
# git sends a push that fits in http.postBuffer with a Content-Length.
BUFFERED = ("-c", f"http.postBuffer={32 * MiB}")
SLOW = 300  # seconds: a generous bound for big transfers on a shared 2-core machine


@dataclass(frozen=True)
class Remote:
    """One repository on a stack: its URL with and without credentials, and its directory."""

    url: str
    bare_url: str
    path: Path


def _new_remote(stack: Stack, user: str, prefix: str) -> Remote:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    stack.hostd("repo", "create", f"{user}/{name}", "--vcs", "git")
    return Remote(
        url=stack.url(f"{user}/{name}.git", user, PASSWORD),
        bare_url=stack.url(f"{user}/{name}.git"),
        path=stack.settings.repo_root / user / f"{name}.git",
    )


def _git(stack: Stack, *args: str, cwd: Path | None = None, check: bool = True, version: str = "HTTP/1.1",
         timeout: float = SLOW) -> subprocess.CompletedProcess[str]:
    return stack.clients.git("-c", f"http.version={version}", *args, cwd=cwd, check=check, timeout=timeout)


def _commit_random(stack: Stack, work: Path, files: dict[str, int]) -> dict[str, str]:
    """Commit files of random bytes ({name: size}); their sha256s."""
    sums = {}
    for name, size in files.items():
        data = os.urandom(size)
        (work / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    _git(stack, "add", *files, cwd=work)
    _git(stack, "commit", "-q", "-m", f"add {', '.join(files)}", cwd=work)
    return sums


def _seed(stack: Stack, remote: Remote, work: Path) -> str:
    """Clone the empty ``remote`` into ``work`` and push one small commit to main; its sha."""
    _git(stack, "clone", "-q", remote.url, str(work))
    (work / "README").write_text("seed\n")
    _git(stack, "add", "README", cwd=work)
    _git(stack, "commit", "-q", "-m", "seed", cwd=work)
    _git(stack, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    return _git(stack, "rev-parse", "HEAD", cwd=work).stdout.strip()


def _remote_refs(stack: Stack, remote: Remote) -> dict[str, str]:
    lines = _git(stack, "ls-remote", remote.url).stdout.splitlines()
    return {ref: sha for sha, ref in (line.split("\t") for line in lines)}


def _fsck(stack: Stack, git_dir: Path) -> None:
    result = _git(stack, "--git-dir", str(git_dir), "fsck", "--full", "--strict", "--no-progress", check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("dangling")]
    assert result.returncode == 0 and not problems, problems


def _temp_packs(git_dir: Path) -> list[Path]:
    objects = git_dir / "objects"
    patterns = ("tmp_pack_*", "pack/tmp*", "pack/.tmp-*", "tmp_objdir-incoming-*")
    return sorted(path for pattern in patterns for path in objects.glob(pattern))


def _snapshot(git_dir: Path) -> dict[str, str]:
    """Every file of a (small) repository with a hash of its content.

    The pack cache is not the repository's content: a clone's response is
    stored there just after the client has read all of it.
    """
    return {
        str(path.relative_to(git_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(git_dir.rglob("*"))
        if path.is_file() and PACK_CACHE_DIR not in path.relative_to(git_dir).parts
    }


def _sha256s(work: Path, names: Iterable[str]) -> dict[str, str]:
    return {name: hashlib.sha256((work / name).read_bytes()).hexdigest() for name in names}


# --- the size limit, on a stack of its own -------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose git pool refuses pushes over 5 MiB."""
    with pytest.MonkeyPatch.context() as patch:
        # hostd.ops.stack.environment() does not pass HOSTD_MAX_PUSH_BYTES on to
        # the pools, which read their own environment; they inherit this one.
        patch.setenv("HOSTD_MAX_PUSH_BYTES", str(LIMIT))
        running = start_stack(tmp_path_factory.mktemp("limited"), HOSTD_MAX_PUSH_BYTES=str(LIMIT))
    try:
        running.add_user("luke", PASSWORD)
        yield running
    finally:
        stop_stack(running)


@dataclass(frozen=True)
class Oversized:
    """A repository with one small commit, and a clone holding two big ones on top."""

    remote: Remote
    work: Path
    seed: str


@pytest.fixture(scope="module")
def oversized(limited: Stack, tmp_path_factory: pytest.TempPathFactory) -> Oversized:
    remote = _new_remote(limited, "luke", "limit")
    work = tmp_path_factory.mktemp("oversized") / "work"
    seed = _seed(limited, remote, work)
    _git(limited, "switch", "-q", "-c", "eight", cwd=work)
    _commit_random(limited, work, {"eight.bin": 8 * MiB})
    _git(limited, "switch", "-q", "-c", "twelve", seed, cwd=work)
    _commit_random(limited, work, {"twelve.bin": 12 * MiB})
    return Oversized(remote, work, seed)


REPORTED = "error: remote unpack failed: push is larger than the server's limit of 5 MiB"


@pytest.mark.parametrize("version", HTTP_VERSIONS)
@pytest.mark.parametrize("options", [(), BUFFERED], ids=["chunked", "with-length"])
def test_push_over_the_limit_fails_with_the_reason(
    limited: Stack, oversized: Oversized, version: str, options: tuple[str, ...]
) -> None:
    """8 MiB against 5: the worker stops storing at 5, reads and drops the
    rest, and answers with receive-pack's report, which git prints in full."""
    before = _snapshot(oversized.remote.path)
    result = _git(limited, *options, "push", "origin", "eight:main", cwd=oversized.work, version=version,
                  check=False)
    assert result.returncode != 0
    assert REPORTED in result.stderr, result.stderr
    assert "! [remote rejected] eight -> main (unpacker error)" in result.stderr, result.stderr
    assert "RPC failed" not in result.stderr and "Everything up-to-date" not in result.stderr, result.stderr
    assert _remote_refs(limited, oversized.remote)["refs/heads/main"] == oversized.seed
    assert _snapshot(oversized.remote.path) == before, "the refused push changed the repository"


def test_an_ssh_push_over_the_limit_fails_with_the_same_reason(limited: Stack, oversized: Oversized,
                                                               tmp_path: Path) -> None:
    """Over SSH the push takes the HTTPS push path: the same limit, report and untouched repository."""
    key = Key.generate(tmp_path)
    add_key(limited, key, "luke")
    ssh = SshClients.of(limited)
    before = _snapshot(oversized.remote.path)
    url = ssh.git_url(f"luke/{oversized.remote.path.name.removesuffix('.git')}")
    result = ssh.git(key, "push", url, "eight:main", cwd=oversized.work, check=False)
    assert result.returncode != 0
    assert REPORTED in result.stderr, result.stderr
    assert _remote_refs(limited, oversized.remote)["refs/heads/main"] == oversized.seed
    assert _snapshot(oversized.remote.path) == before, "the refused push changed the repository"


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_push_beyond_twice_the_limit_fails_visibly(limited: Stack, oversized: Oversized, version: str) -> None:
    """12 MiB against 5: the worker reads at most 10, answers, and closes the
    connection under a client that is still sending. What git prints then
    depends on how much of the pack the proxy had buffered: usually the report
    and "RPC failed; curl 55 Send failure" (HTTP/1.1) or "curl 92 ... CANCEL"
    (HTTP/2), sometimes only "curl 65 ... unable to rewind rpc post data"."""
    before = _snapshot(oversized.remote.path)
    result = _git(limited, "push", "origin", "twelve:main", cwd=oversized.work, version=version, check=False)
    assert result.returncode != 0
    assert REPORTED in result.stderr or "error: RPC failed" in result.stderr, result.stderr
    assert _remote_refs(limited, oversized.remote)["refs/heads/main"] == oversized.seed
    assert _snapshot(oversized.remote.path) == before


def test_dulwich_client_push_over_the_limit_fails_with_the_reason(limited: Stack, oversized: Oversized) -> None:
    from dulwich import porcelain

    before = _snapshot(oversized.remote.path)
    _git(limited, "config", "http.sslCAInfo", str(limited.clients.ca), cwd=oversized.work)
    with pytest.raises(porcelain.Error, match="unpack push is larger than the server's limit of 5 MiB"):
        porcelain.push(str(oversized.work), oversized.remote.bare_url, "refs/heads/eight:refs/heads/main",
                       username="luke", password=PASSWORD, errstream=BytesIO())
    assert _snapshot(oversized.remote.path) == before


def test_libgit2_push_over_the_limit_fails(limited: Stack, oversized: Oversized) -> None:
    """libgit2 reports the refusal without the server's reason."""
    pygit2 = pytest.importorskip("pygit2")

    before = _snapshot(oversized.remote.path)
    pygit2.settings.set_ssl_cert_locations(str(limited.clients.ca), None)
    statuses: dict[str, str | None] = {}
    callbacks = pygit2.RemoteCallbacks(credentials=pygit2.UserPass("luke", PASSWORD))
    callbacks.push_update_reference = lambda ref, message: statuses.__setitem__(ref, message)
    remote = pygit2.Repository(str(oversized.work)).remotes.create_anonymous(oversized.remote.bare_url)
    with pytest.raises(pygit2.GitError, match="unpacking the sent packfile failed on the remote"):
        remote.push(["refs/heads/eight:refs/heads/main"], callbacks=callbacks)
    assert statuses == {"refs/heads/main": "unpacker error"}
    assert _snapshot(oversized.remote.path) == before


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_push_under_the_limit_lands_after_refused_ones(
    limited: Stack, oversized: Oversized, tmp_path: Path, version: str
) -> None:
    remote = _new_remote(limited, "luke", "under")
    work = tmp_path / "work"
    _seed(limited, remote, work)
    sums = _commit_random(limited, work, {"four.bin": 4 * MiB})  # over postBuffer: chunked
    _git(limited, "push", "-q", "origin", "HEAD:main", cwd=work, version=version)
    clone = tmp_path / "clone"
    _git(limited, "clone", "-q", remote.url, str(clone), version=version)
    assert _sha256s(clone, sums) == sums
    _fsck(limited, remote.path)


# --- big pushes through the session stack --------------------------------------


@pytest.fixture(scope="module")
def lara(stack: Stack) -> str:
    stack.forget_failed_logins()
    stack.add_user("lara", PASSWORD)
    return "lara"


# Four files of random (incompressible) bytes: a pack of 128 MiB, past what a
# worker could hold under the limit below. dulwich held a received pack about
# three times over (a 100 MiB push peaked near 300 MiB); git's receive-pack
# stores it while the worker passes it along a chunk at a time. (`make bench`
# pushes 1 GiB; this keeps the suite's time down.)
BIG_FILES = {f"big{i}.bin": 32 * MiB for i in range(4)}
BIG_MIB = sum(BIG_FILES.values()) // MiB
#: The most a git worker's peak resident memory may grow by during the push.
WORKER_GROWTH_MIB = 100


@dataclass(frozen=True)
class BigCommit:
    """A local repository whose HEAD holds ``BIG_FILES``, with their sha256s."""

    work: Path
    sums: dict[str, str]


@pytest.fixture(scope="module")
def big_commit(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> BigCommit:
    """``BIG_MIB`` MiB of random bytes in four files, in one commit."""
    work = tmp_path_factory.mktemp("big") / "work"
    _git(stack, "init", "-q", str(work))
    return BigCommit(work, _commit_random(stack, work, BIG_FILES))


def _peak_mib(pid: int) -> int:
    """A process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmHWM":
            return int(value.split()[0]) // 1024
    raise AssertionError(f"no VmHWM for {pid}")


class PeakGrowth:
    """How far the peak resident memory (VmHWM) of some processes rose while a block ran.

    The peak is reset first where the kernel allows (``clear_refs`` 5), so an
    earlier request's peak cannot hide this one's.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        for pid in pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.start = {pid: _peak_mib(pid) for pid in pids}
        self.end = dict(self.start)

    def __enter__(self) -> PeakGrowth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = {pid: _peak_mib(pid) for pid in self.pids}

    def growth(self) -> int:
        return max(self.end[pid] - self.start[pid] for pid in self.pids)

    def summary(self) -> str:
        return "; ".join(f"pid {pid}: VmHWM {self.start[pid]}->{self.end[pid]} MiB" for pid in self.pids)


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_big_push_lands_in_constant_worker_memory_and_clones_back_identical(
    stack: Stack, lara: str, big_commit: BigCommit, tmp_path: Path, version: str,
    record_property: Callable[[str, object], None],
) -> None:
    remote = _new_remote(stack, lara, "big")
    workers = stack.pool_workers()
    assert workers, "no git pool worker found under /proc"
    # The first check of a password costs a worker argon2's 64 MiB; done here, the
    # verification is cached (in memcached, for every worker) before the measurement.
    _git(stack, "ls-remote", remote.url, version=version)
    started = time.monotonic()
    with PeakGrowth(workers) as memory:
        _git(stack, "push", "-q", remote.url, "HEAD:refs/heads/main", cwd=big_commit.work, version=version)
    pushed = time.monotonic() - started
    head = _git(stack, "rev-parse", "HEAD", cwd=big_commit.work).stdout.strip()
    assert _remote_refs(stack, remote)["refs/heads/main"] == head

    clone = tmp_path / "clone"
    started = time.monotonic()
    _git(stack, "clone", "-q", remote.url, str(clone), version=version)
    cloned = time.monotonic() - started
    assert _sha256s(clone, BIG_FILES) == big_commit.sums
    record_property("push_seconds", round(pushed, 1))
    record_property("clone_seconds", round(cloned, 1))
    record_property("worker_peak_growth_mib", memory.growth())
    print(f"{version}: {BIG_MIB} MiB pushed in {pushed:.1f}s, cloned in {cloned:.1f}s; git workers {memory.summary()}")
    assert memory.growth() < WORKER_GROWTH_MIB, memory.summary()
    _fsck(stack, remote.path)
    assert _temp_packs(remote.path) == []


# --- an interrupted push -------------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


@dataclass(frozen=True)
class KilledCommit:
    """A local repository whose HEAD adds 60 MiB on top of a small ``seed`` commit."""

    work: Path
    seed: str
    head: str


@pytest.fixture(scope="module")
def killed_commit(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> KilledCommit:
    work = tmp_path_factory.mktemp("killed") / "work"
    _git(stack, "init", "-q", str(work))
    (work / "README").write_text("seed\n")
    _git(stack, "add", "README", cwd=work)
    _git(stack, "commit", "-q", "-m", "seed", cwd=work)
    seed = _git(stack, "rev-parse", "HEAD", cwd=work).stdout.strip()
    _commit_random(stack, work, {f"part{i}.bin": 15 * MiB for i in range(4)})
    return KilledCommit(work, seed, _git(stack, "rev-parse", "HEAD", cwd=work).stdout.strip())


def _received(git_dir: Path) -> int:
    """Bytes of a push in progress: git's quarantine (``objects/tmp_objdir-incoming-*``: a
    temporary pack, or loose objects for a push of few objects), or dulwich's
    temporary pack (``objects/tmp_pack_*``, without git)."""
    objects = git_dir / "objects"
    total = 0
    for path in [*objects.glob("tmp_pack_*"), *objects.glob("tmp_objdir-incoming-*/**/*")]:
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return total


@pytest.mark.parametrize("version", HTTP_VERSIONS)
def test_push_killed_mid_upload_changes_nothing(
    stack: Stack, lara: str, killed_commit: KilledCommit, version: str
) -> None:
    remote = _new_remote(stack, lara, "killed")
    work = killed_commit.work
    _git(stack, "push", "-q", remote.url, f"{killed_commit.seed}:refs/heads/main", cwd=work, version=version)
    packs = sorted((remote.path / "objects" / "pack").iterdir())

    push = subprocess.Popen(
        ["git", "-c", f"http.version={version}", "push", "-q", remote.url, "HEAD:refs/heads/main"],
        cwd=work, env=stack.clients.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sizes: list[int] = []
    try:
        def uploading() -> bool:
            """What the server has stored of the push is well under way and still growing."""
            sizes.append(_received(remote.path))
            return sizes[-1] > 16 * MiB and sizes[-2] < sizes[-1]

        mid_upload = _wait_for(uploading, timeout=120)
    finally:
        # The whole client: git, git-remote-https and pack-objects share its session.
        os.killpg(push.pid, signal.SIGKILL)
        push.wait(timeout=30)
    assert mid_upload, f"never saw what the server stored of the push grow: sizes {sizes[-5:]}"
    assert sizes[-1] < 60 * MiB
    print(f"{version}: client killed with {sizes[-1] / MiB:.1f} of 60 MiB received")

    # The worker's read fails when HAProxy drops the connection, git's stdin
    # ends, and git removes its quarantine (dulwich alone left it for `hostd maintain`).
    assert _wait_for(lambda: not _temp_packs(remote.path), timeout=60, interval=0.2), _temp_packs(remote.path)
    assert _remote_refs(stack, remote) == {"HEAD": killed_commit.seed, "refs/heads/main": killed_commit.seed}
    assert sorted((remote.path / "objects" / "pack").iterdir()) == packs
    _fsck(stack, remote.path)

    # Nothing is wedged: the same push, uninterrupted, lands.
    _git(stack, "push", "-q", remote.url, "HEAD:refs/heads/main", cwd=work, version=version)
    assert _remote_refs(stack, remote)["refs/heads/main"] == killed_commit.head

    report = stack.hostd("maintain", f"{lara}/{remote.path.name.removesuffix('.git')}")
    assert "FAILED" not in report.stdout + report.stderr, report.stdout + report.stderr
    assert _temp_packs(remote.path) == []
    _fsck(stack, remote.path)


def test_maintain_removes_an_abandoned_temporary_pack_only_when_old(stack: Stack, lara: str, tmp_path: Path) -> None:
    """What a worker killed mid-push leaves behind (it cannot clean up after itself)."""
    remote = _new_remote(stack, lara, "stale")
    seed = _seed(stack, remote, tmp_path / "work")
    abandoned = remote.path / "objects" / "tmp_pack_abandoned"
    abandoned.write_bytes(b"PACK" + os.urandom(1 << 16))
    name = f"{lara}/{remote.path.name.removesuffix('.git')}"

    stack.hostd("maintain", name)
    assert abandoned.exists(), "a temporary pack still being written was removed"
    hour_ago = time.time() - 3600
    os.utime(abandoned, (hour_ago, hour_ago))
    stack.hostd("maintain", name)
    assert _temp_packs(remote.path) == []
    assert _remote_refs(stack, remote)["refs/heads/main"] == seed
    _fsck(stack, remote.path)


# --- other client implementations ----------------------------------------------


def test_dulwich_client_clones_and_pushes(stack: Stack, lara: str, tmp_path: Path) -> None:
    from dulwich import porcelain
    from dulwich.config import ConfigDict

    remote = _new_remote(stack, lara, "dulwich")
    seed = _seed(stack, remote, tmp_path / "seed")
    # dulwich's urllib3 client takes the CA from git's own setting.
    config = ConfigDict()
    config.set((b"http",), b"sslCAInfo", str(stack.clients.ca).encode())
    errors = BytesIO()
    target = tmp_path / "dulwich"
    repo = porcelain.clone(remote.bare_url, str(target), config=config, username=lara, password=PASSWORD,
                           errstream=errors)
    try:
        assert repo.head().decode() == seed
        assert (target / "README").read_text() == "seed\n"
        repo_config = repo.get_config()
        repo_config.set((b"http",), b"sslCAInfo", str(stack.clients.ca).encode())
        repo_config.write_to_path()
        (target / "from-dulwich.txt").write_text("pushed by dulwich\n")
        porcelain.add(repo, [str(target / "from-dulwich.txt")])
        new = porcelain.commit(repo, message=b"from dulwich", author=b"D <d@example.com>",
                               committer=b"D <d@example.com>")
        result = porcelain.push(repo, remote.bare_url, "refs/heads/main", username=lara, password=PASSWORD,
                                errstream=errors)
        assert result.ref_status is not None and not any(result.ref_status.values()), result.ref_status
    finally:
        repo.close()

    assert _remote_refs(stack, remote)["refs/heads/main"] == new.decode()
    check = tmp_path / "check"
    _git(stack, "clone", "-q", remote.url, str(check))
    assert (check / "from-dulwich.txt").read_text() == "pushed by dulwich\n"
    _fsck(stack, remote.path)


def test_libgit2_clones_and_pushes(stack: Stack, lara: str, tmp_path: Path) -> None:
    pygit2 = pytest.importorskip("pygit2")

    remote = _new_remote(stack, lara, "libgit2")
    seed = _seed(stack, remote, tmp_path / "seed")
    # libgit2's TLS trust store is process-wide.
    pygit2.settings.set_ssl_cert_locations(str(stack.clients.ca), None)
    callbacks = pygit2.RemoteCallbacks(credentials=pygit2.UserPass(lara, PASSWORD))
    target = tmp_path / "libgit2"
    repo = pygit2.clone_repository(remote.bare_url, str(target), callbacks=callbacks)
    assert str(repo.head.target) == seed
    assert (target / "README").read_text() == "seed\n"

    (target / "from-libgit2.txt").write_text("pushed by libgit2\n")
    repo.index.add("from-libgit2.txt")
    repo.index.write()
    author = pygit2.Signature("L", "l@example.com")
    new = repo.create_commit("HEAD", author, author, "from libgit2", repo.index.write_tree(), [repo.head.target])

    statuses: dict[str, str | None] = {}
    pushing = pygit2.RemoteCallbacks(credentials=pygit2.UserPass(lara, PASSWORD))
    pushing.push_update_reference = lambda ref, message: statuses.__setitem__(ref, message)
    repo.remotes["origin"].push(["refs/heads/main"], callbacks=pushing)
    assert statuses == {"refs/heads/main": None}  # None: accepted
    assert _remote_refs(stack, remote)["refs/heads/main"] == str(new)
    check = tmp_path / "check"
    _git(stack, "clone", "-q", remote.url, str(check))
    assert (check / "from-libgit2.txt").read_text() == "pushed by libgit2\n"
    _fsck(stack, remote.path)
