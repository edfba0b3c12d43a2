"""hostd.hg.sshserve: the real ``hg`` client over its own SSH transport, served in threads of this process.

No sshd: hg's ``ui.ssh`` is a small relay script that hands its stdin,
stdout and stderr to a gateway running in this test process over a Unix
socket (``SCM_RIGHTS``, as the real gateway receives them from sshd), and
exits with the status the gateway sends back. The gateway serves every
session in a thread of its own, so the concurrent tests run several
Mercurial servers in one interpreter, with the real client at each end.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mercurial import wireprotoserver, wireprotov1server

from hostd.hg import hooks, sshserve
from hostd.hg.app import base_ui
from hostd.names import RepoName
from hostd.store.storage import Storage, hg_command

ZERO = "0" * 40
REFUSED = "You have read-only access to alice/notes; pushing needs write access."

# The ssh command hg runs: ``relay.py SOCKET [USER@]HOST 'hg -R PATH serve --stdio'``.
RELAY = """\
import os, socket, sys
sock_path, *_, host, command = sys.argv[1:]
words = command.split()
if words[:2] != ["hg", "-R"] or words[3:] != ["serve", "--stdio"]:
    sys.exit("relay: unexpected remote command " + command)
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(sock_path)
    socket.send_fds(sock, [f"{host}\\0{words[2]}".encode()], [0, 1, 2])
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the gateway holds the client's pipes now
    status = sock.recv(1)
sys.exit(status[0] if status else 99)
"""


class DummyPushLog:
    """Collects what the push-log hooks record."""

    def __init__(self) -> None:
        self.records: list[tuple[RepoName, str, list[tuple[str, str, str]]]] = []
        self._lock = threading.Lock()

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None:
        with self._lock:
            self.records.append((repo, username, updates))


class Recorder(hooks.PushRecorder):
    """A push recorder that also lists the transactions whose heads it was asked to snapshot."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.snapshots: list[bytes] = []

    def opened(self, txnid: bytes, heads: hooks.Heads) -> None:
        self.snapshots.append(txnid)
        super().opened(txnid, heads)


@dataclass
class Gateway:
    """Stands in for the SSH gateway: one thread per session, each calling serve_stdio.

    The user is the one in the ssh URL (``ssh://bob@test/...``, alice if
    none); ``may_write(user)`` decides pushes; ``barrier`` makes sessions
    start serving only together. Its base ui is ``base_ui()`` as it comes, as
    the real gateway's is: serve_stdio puts the push-log hooks on each copy.
    """

    storage: Storage
    socket_path: Path
    pushlog: DummyPushLog = field(default_factory=DummyPushLog)
    may_write: Callable[[str], str | None] = lambda user: None
    max_push_bytes: int = 100 << 20
    barrier: threading.Barrier | None = None
    statuses: list[int] = field(default_factory=list)
    serving: int = 0
    most_at_once: int = 0
    threads: set[int] = field(default_factory=set)
    recorders: list[Recorder] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.ui = base_ui()

    def accept_forever(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn: socket.socket) -> None:
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 4096, 3)
            host, path = message.decode().split("\0")
            user = host.split("@")[0] if "@" in host else "alice"
            owner, name = path.strip("/").split("/")
            ref = RepoName(owner, name)
            with os.fdopen(fds[0], "rb") as fin, os.fdopen(fds[1], "wb") as fout, \
                    os.fdopen(fds[2], "wb") as ferr:
                if self.barrier is not None:
                    self.barrier.wait()
                with self._lock:
                    self.serving += 1
                    self.most_at_once = max(self.most_at_once, self.serving)
                    self.threads.add(threading.get_ident())
                    recorder = Recorder(self.pushlog, ref, user)
                    self.recorders.append(recorder)
                try:
                    status = sshserve.serve_stdio(
                        self.ui, self.storage.path(ref, "hg"), fin, fout, ferr, recorder=recorder,
                        may_write=lambda: self.may_write(user), max_push_bytes=self.max_push_bytes)
                finally:
                    with self._lock:
                        self.serving -= 1
            with self._lock:
                self.statuses.append(status)
            conn.sendall(bytes([status]))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    storage = Storage(tmp_path / "repos")
    storage.create(RepoName("alice", "notes"), "hg", readme="hi")
    # A short path: Unix socket names are limited to about 100 bytes.
    socket_path = Path(f"/tmp/hostd-hgssh-{os.getpid()}-{id(storage)}.sock")
    gateway = Gateway(storage, socket_path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(socket_path))
    listener.listen(16)
    (tmp_path / "relay.py").write_text(RELAY)
    thread = threading.Thread(target=gateway.accept_forever, args=(listener,), daemon=True)
    thread.start()
    yield gateway
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    socket_path.unlink()
    thread.join(10)


def hg(tmp_path: Path, gateway: Gateway, *args: str, cwd: Path | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real hg client, its ``ssh`` being the relay to the gateway."""
    ssh = f"{sys.executable} {tmp_path / 'relay.py'} {gateway.socket_path}"
    env = {"HGRCPATH": "", "HGPLAIN": "1", "PATH": "/usr/bin:/bin"}
    command = [*hg_command(), "--config", f"ui.ssh={ssh}", "--config", "ui.username=t <t@example.com>", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result
    return result


def url(user: str = "alice", path: str = "alice/notes") -> str:
    return f"ssh://{user}@test/{path}"


def server(gateway: Gateway) -> Path:
    return gateway.storage.path(RepoName("alice", "notes"), "hg")


def log(repo: Path, template: str, rev: str = "tip") -> str:
    """``hg log`` of ``rev`` in a local repository, without the gateway."""
    return subprocess.run([*hg_command(), "-R", str(repo), "log", "-r", rev, "-T", template],
                          env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"}, check=True,
                          capture_output=True, text=True).stdout


def commit(tmp_path: Path, gateway: Gateway, clone: Path, name: str, content: bytes = b"x") -> str:
    (clone / name).write_bytes(content)
    hg(tmp_path, gateway, "commit", "-q", "-A", "-m", name, cwd=clone)
    return log(clone, "{node}", ".")


def bookmarks(repo: Path) -> dict[str, str]:
    return dict(line.split() for line in log(repo, "{bookmarks % '{bookmark} {node}\\n'}", "bookmark()").splitlines())


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where Mercurial's unbundle spools a push in this process (it uses ``tempfile``)."""
    (tmp_path / "spool").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spool"))
    return tmp_path / "spool"


@pytest.fixture
def clone(tmp_path: Path, gateway: Gateway) -> Path:
    hg(tmp_path, gateway, "clone", "-q", url(), str(tmp_path / "clone"))
    return tmp_path / "clone"


# -- reads ---------------------------------------------------------------------


def test_clone_and_pull(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    assert (clone / "README.md").read_text() == "hi"
    assert log(clone, "{node}") == log(server(gateway), "{node}")
    # A changeset lands on the server by other means; pull brings it.
    other = tmp_path / "other"
    subprocess.run([*hg_command(), "clone", "-q", str(server(gateway)), str(other)], check=True,
                   env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"})
    node = commit(tmp_path, gateway, other, "two.txt")
    subprocess.run([*hg_command(), "-R", str(other), "push", "-q", str(server(gateway))], check=True,
                   env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"})
    pulled = hg(tmp_path, gateway, "pull", "-u", url(), cwd=clone)
    assert "added 1 changesets" in pulled.stdout
    assert log(clone, "{node}") == node
    assert gateway.statuses == [0, 0]


def test_a_clone_is_not_limited_by_the_push_limit(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    commit(tmp_path, gateway, clone, "big.bin", os.urandom(200_000))
    hg(tmp_path, gateway, "push", "-q", url(), cwd=clone)
    gateway.max_push_bytes = 1000
    for how in ("--stream", "--pull"):  # the stream clone hostd prefers, and a bundle
        hg(tmp_path, gateway, "clone", "-q", how, url(), str(tmp_path / how))
        assert (tmp_path / how / "big.bin").read_bytes() == (clone / "big.bin").read_bytes()
    hg(tmp_path, gateway, "pull", "-q", url(), cwd=clone)


def test_an_unknown_repository_is_an_internal_error_without_a_traceback(tmp_path: Path, gateway: Gateway,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="hostd.hg.sshserve"):
        result = hg(tmp_path, gateway, "clone", url(path="alice/nothing"), str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "remote: hostd: internal error" in result.stderr
    assert "Traceback" not in result.stderr
    assert gateway.statuses == [1]
    assert "failed" in caplog.text


# -- pushes and the push log -----------------------------------------------------------


def test_push_of_changesets_and_a_bookmark_is_recorded(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    base = log(server(gateway), "{node}")
    node = commit(tmp_path, gateway, clone, "one.txt")
    hg(tmp_path, gateway, "bookmark", "-q", "feat", cwd=clone)
    pushed = hg(tmp_path, gateway, "push", "-B", "feat", url("bob"), cwd=clone)
    assert "added 1 changesets" in pushed.stdout
    assert log(server(gateway), "{node}") == node
    assert bookmarks(server(gateway)) == {"feat": node}
    assert gateway.pushlog.records == [
        (RepoName("alice", "notes"), "bob", [("branch:default", base, node), ("bookmark:feat", ZERO, node)]),
    ]


def test_bookmark_push_without_changesets(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    base = log(server(gateway), "{node}")
    hg(tmp_path, gateway, "bookmark", "-q", "-r", base, "release", cwd=clone)
    hg(tmp_path, gateway, "push", "-B", "release", url(), cwd=clone, check=False)
    assert bookmarks(server(gateway)) == {"release": base}
    assert gateway.pushlog.records == [(RepoName("alice", "notes"), "alice", [("bookmark:release", ZERO, base)])]


def test_a_refused_write_changes_nothing_and_shows_the_reason(tmp_path: Path, gateway: Gateway,
                                                             clone: Path, spool: Path) -> None:
    base = log(server(gateway), "{node}")
    hg(tmp_path, gateway, "bookmark", "-q", "-r", base, "old", cwd=clone)
    hg(tmp_path, gateway, "push", "-q", "-B", "old", url(), cwd=clone, check=False)  # 1: no changesets
    assert bookmarks(server(gateway)) == {"old": base}
    gateway.pushlog.records.clear()
    asked: list[tuple[str, int]] = []  # who, and how many bytes of the push were spooled then

    def may_write(user: str) -> str | None:
        asked.append((user, sum(path.stat().st_size for path in spool.iterdir())))
        return REFUSED if user == "reader" else None

    gateway.may_write = may_write
    commit(tmp_path, gateway, clone, "one.txt")
    hg(tmp_path, gateway, "bookmark", "-q", "-f", "old", cwd=clone)
    hg(tmp_path, gateway, "bookmark", "-q", "-r", base, "fresh", cwd=clone)
    # Changesets; changesets and a bookmark move; a new bookmark on a changeset the server has.
    for args in (["-r", "."], ["-B", "old"], ["-B", "fresh"]):
        result = hg(tmp_path, gateway, "push", *args, url("reader"), cwd=clone, check=False)
        assert result.returncode != 0, result
        assert REFUSED in result.stderr, result
        assert "Traceback" not in result.stderr
    assert asked and set(asked) == {("reader", 0)}  # asked before a byte of the payload was stored
    assert log(server(gateway), "{node}") == base
    assert log(server(gateway), "{rev}\n", "all()") == "0\n"
    assert bookmarks(server(gateway)) == {"old": base}
    assert gateway.pushlog.records == []
    assert list(spool.iterdir()) == []
    # The same push by a writer goes through; the transaction hook sees it spooled.
    hg(tmp_path, gateway, "push", "-q", "-B", "old", url("writer"), cwd=clone)
    assert asked[-1][0] == "writer" and asked[-1][1] > 0
    assert log(server(gateway), "{node}") == log(clone, "{node}", ".")


def test_a_write_refused_once_the_payload_is_in_is_refused_by_the_transaction_hook(
        tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    """Access revoked while the push uploads: the pretxnopen hook asks again, before
    the push log's snapshot and before anything is written."""
    answers = iter([None])
    gateway.may_write = lambda user: next(answers, REFUSED)
    base = log(server(gateway), "{node}")
    commit(tmp_path, gateway, clone, "one.txt")
    result = hg(tmp_path, gateway, "push", url(), cwd=clone, check=False)
    assert result.returncode != 0
    assert f"remote: {REFUSED}" in result.stderr, result
    assert log(server(gateway), "{node}") == base
    assert gateway.pushlog.records == []
    assert gateway.recorders[-1].snapshots == []  # the write check ran first


def test_may_write_failing_refuses_the_push(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    def broken(user: str) -> str | None:
        raise ConnectionError("database down")

    gateway.may_write = broken
    base = log(server(gateway), "{node}")
    commit(tmp_path, gateway, clone, "one.txt")
    result = hg(tmp_path, gateway, "push", url(), cwd=clone, check=False)
    assert result.returncode != 0
    assert sshserve.CANNOT_CHECK in result.stderr
    assert "database down" not in result.stderr
    assert log(server(gateway), "{node}") == base


@pytest.mark.parametrize(("limit", "status"), [(150_000, 0), (20_000, 1)], ids=["drained-then-refused", "cut-off"])
def test_a_push_over_the_size_limit_stores_nothing(tmp_path: Path, gateway: Gateway, clone: Path,
                                                  limit: int, status: int, spool: Path) -> None:
    """Refused at the limit: up to another limit's worth of the rest is read and thrown
    away so that hg shows Mercurial's own answer; past that the session is cut off."""
    base = log(server(gateway), "{node}")
    commit(tmp_path, gateway, clone, "big.bin", os.urandom(200_000))
    gateway.max_push_bytes = limit
    result = hg(tmp_path, gateway, "push", url(), cwd=clone, check=False)
    assert result.returncode != 0
    # Drained, Mercurial's own answer: "remote: <reason>" then "abort: push failed on remote".
    # Cut off, hg prints the session's last stderr line ("remote: <reason>") among its status lines.
    output = result.stdout + result.stderr
    assert f"remote: push refused: larger than the {limit} bytes limit" in output
    assert "Traceback" not in output
    assert gateway.statuses[-1] == status
    assert log(server(gateway), "{node}") == base
    assert not (server(gateway) / ".hg" / "store" / "journal").exists()
    assert list(spool.iterdir()) == []
    assert gateway.pushlog.records == []
    gateway.max_push_bytes = 1 << 20
    hg(tmp_path, gateway, "push", "-q", url(), cwd=clone)
    assert log(server(gateway), "{node}") == log(clone, "{node}", ".")


def test_a_session_that_may_write_rolls_back_a_killed_push(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    """A push killed inside its transaction leaves ``store/journal``; as for HTTP, the
    next session that could push recovers it, and one that cannot leaves it alone."""
    base = log(server(gateway), "{node}")
    node = commit(tmp_path, gateway, clone, "one.txt")
    bundle = tmp_path / "killed.hg"
    local = {"HGRCPATH": "", "PATH": "/usr/bin:/bin"}
    subprocess.run([*hg_command(), "-R", str(clone), "bundle", "-q", "-r", node, "--base", "null", str(bundle)],
                   env=local, check=True)
    killed = subprocess.run([*hg_command(), "-R", str(server(gateway)), "unbundle", str(bundle), "--config",
                             "hooks.pretxnchangegroup=kill -9 $PPID"], env=local, capture_output=True, check=False)
    assert killed.returncode != 0
    journal = server(gateway) / ".hg" / "store" / "journal"
    assert journal.exists()

    gateway.may_write = lambda user: REFUSED
    hg(tmp_path, gateway, "pull", "-q", url(), cwd=clone)
    assert journal.exists()
    gateway.may_write = lambda user: None
    hg(tmp_path, gateway, "push", "-q", url(), cwd=clone)
    assert not journal.exists()
    assert log(server(gateway), "{node}") == node
    assert gateway.pushlog.records == [(RepoName("alice", "notes"), "alice", [("branch:default", base, node)])]


def test_a_bundle1_push_over_the_size_limit_is_refused_too(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    """Clients from before bundle2 (or told to act so) get "push failed" and the reason on stderr."""
    base = log(server(gateway), "{node}")
    commit(tmp_path, gateway, clone, "big.bin", os.urandom(50_000))
    gateway.max_push_bytes = 40_000
    result = hg(tmp_path, gateway, "--config", "devel.legacy.exchange=bundle1", "push", url(), cwd=clone,
                check=False)
    assert result.returncode != 0
    assert "remote: push refused: larger than the 40000 bytes limit" in result.stdout + result.stderr
    assert log(server(gateway), "{node}") == base
    assert gateway.statuses[-1] == 0  # the session went on to its end as usual


# -- many sessions in one process ------------------------------------------------------


def test_concurrent_sessions_in_threads_of_one_process(tmp_path: Path, gateway: Gateway, clone: Path) -> None:
    """Four pushes and four clones at once, each session in its own thread of
    this process: every push lands, each is recorded for its own user."""
    users = [f"user{i}" for i in range(4)]
    nodes = {}
    for user in users:
        # One local clone per pusher: concurrent pushes from one clone would wait on its lock.
        subprocess.run([*hg_command(), "clone", "-q", str(clone), str(tmp_path / user)], check=True,
                       env={"HGRCPATH": "", "PATH": "/usr/bin:/bin"})
        nodes[user] = commit(tmp_path, gateway, tmp_path / user, f"{user}.txt")
        hg(tmp_path, gateway, "bookmark", "-q", user, cwd=tmp_path / user)
    gateway.barrier = threading.Barrier(2 * len(users), timeout=60)

    def push(user: str) -> None:
        hg(tmp_path, gateway, "push", "-q", "-f", "-B", user, url(user), cwd=tmp_path / user)

    def clone_as(user: str) -> None:
        hg(tmp_path, gateway, "clone", "-q", "-U", url(user), str(tmp_path / f"clone-{user}"))

    with ThreadPoolExecutor(2 * len(users)) as pool:
        for job in [pool.submit(push, user) for user in users] + [pool.submit(clone_as, user) for user in users]:
            job.result()
    assert gateway.most_at_once > 1
    assert len(gateway.threads) > 1
    assert bookmarks(server(gateway)) == nodes
    assert len(gateway.pushlog.records) == len(users)
    for _, user, updates in gateway.pushlog.records:
        assert ("bookmark:" + user, ZERO, nodes[user]) in updates
        assert all(new == nodes[user] for _, _, new in updates)


# -- the raw protocol, over pipes --------------------------------------------------------


def raw_session(gateway: Gateway, request: bytes, *, limit: int = 1 << 20,
                may_write: Callable[[], str | None] = lambda: None) -> tuple[int, bytes, bytes]:
    """serve_stdio on in-memory files, fed ``request``; (status, stdout, stderr)."""
    fin = io.BufferedReader(io.BytesIO(request))
    fout, ferr = io.BytesIO(), io.BytesIO()
    status = sshserve.serve_stdio(gateway.ui, server(gateway), fin, fout, ferr,
                                  recorder=hooks.PushRecorder(gateway.pushlog, RepoName("alice", "notes"), "t"),
                                  may_write=may_write, max_push_bytes=limit)
    return status, fout.getvalue(), ferr.getvalue()


def test_hello_and_end_of_input(gateway: Gateway) -> None:
    status, out, err = raw_session(gateway, b"hello\n")
    assert status == 0
    assert b"capabilities:" in out and b"unbundle" in out
    assert raw_session(gateway, b"")[0] == 0


@pytest.mark.parametrize("request_", [
    pytest.param(b"between\npairs x\n", id="bad-length"),
    pytest.param(b"between\npairs -1\n", id="negative-length"),
    pytest.param(b"known\nnodes 3\nxyz", id="bad-node"),
    pytest.param(b"hello" * 2000 + b"\n", id="line-too-long"),
])
def test_a_malformed_request_ends_the_session_cleanly(gateway: Gateway, request_: bytes) -> None:
    status, _, err = raw_session(gateway, request_)
    assert status == 1
    assert err.endswith(sshserve.MALFORMED)
    assert b"Traceback" not in err


def test_an_unknown_command_gets_an_empty_answer(gateway: Gateway) -> None:
    assert raw_session(gateway, b"frobnicate\nhello\n")[1].startswith(b"0\n")


def test_a_pushkey_command_asks_may_write(gateway: Gateway) -> None:
    """The old ``pushkey`` wire command moves a bookmark without unbundle: prepushkey refuses it."""
    node = log(server(gateway), "{node}").encode()
    # Each argument: "name length\n" and that many bytes, no newline after them.
    request = b"pushkey\nnamespace 9\nbookmarkskey 4\nfeatold 0\nnew 40\n" + node
    status, out, err = raw_session(gateway, request, may_write=lambda: REFUSED)
    assert status == 0
    assert out == b"2\n0\n"
    assert f"pushkey-abort: {REFUSED}".encode() in err
    assert bookmarks(server(gateway)) == {}
    # Allowed, the same command moves the bookmark.
    assert raw_session(gateway, request)[1] == b"2\n1\n"
    assert bookmarks(server(gateway)) == {"feat": node.decode()}


def test_an_unexpected_argument_is_mercurials_abort(gateway: Gateway) -> None:
    status, _, err = raw_session(gateway, b"between\nfoo 1\nx")
    assert status == 255
    assert err.startswith(b"abort: unexpected parameter")


def test_two_sessions_over_pipes_in_two_threads(gateway: Gateway) -> None:
    """Two raw sessions talking at once, each blocked on its own pipe in turn."""
    results: dict[int, bytes] = {}
    pipes = [(os.pipe(), os.pipe()) for _ in range(2)]
    handshake = b"hello\nbetween\npairs 81\n" + b"0" * 40 + b"-" + b"0" * 40

    def serve(index: int) -> None:
        (client_read, server_write), (server_read, client_write) = pipes[index]
        with os.fdopen(server_read, "rb") as fin, os.fdopen(server_write, "wb") as fout:
            err = io.BytesIO()
            results[index] = bytes([sshserve.serve_stdio(
                gateway.ui, server(gateway), fin, fout, err,
                recorder=hooks.PushRecorder(gateway.pushlog, RepoName("alice", "notes"), "t"),
                may_write=lambda: None, max_push_bytes=1 << 20)])

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    readers = []
    for (client_read, _), (_, client_write) in pipes:
        os.write(client_write, handshake)
        readers.append(os.fdopen(client_read, "rb"))
    for reader in readers:  # both sessions are open and waiting for more at this point
        length = int(reader.readline())
        assert b"capabilities:" in reader.read(length)
        assert reader.readline() == b"1\n" and reader.read(1) == b"\n"
    for (_, _), (_, client_write) in pipes:
        os.close(client_write)
    for thread in threads:
        thread.join(30)
    for reader in readers:
        assert reader.read() == b""
        reader.close()
    assert results == {0: b"\0", 1: b"\0"}


# -- the Mercurial internals relied on --------------------------------------------------


def test_mercurials_ssh_server_is_what_sshserve_was_written_against() -> None:
    """If one of these fails, Mercurial changed underneath :mod:`hostd.hg.sshserve`: read its docstring."""
    assert list(inspect.signature(wireprotoserver.sshserver).parameters)[:2] == ["ui", "repo"]
    # Its streams are the ui's (fds 0 and 1 only when they are the process's own).
    assert "self._ui.protectedfinout()" in inspect.getsource(wireprotoserver.sshserver.serveuntil)
    # The request loop reads ui.fin line by line; a push's payload is "<length>\n<data>" frames.
    assert "fin.readline()" in inspect.getsource(wireprotoserver._runsshserver)
    assert "int(self._fin.readline())" in inspect.getsource(wireprotoserver.sshv1protocolhandler.getpayload)
    # The payload is spooled before anything is applied; an Abort marked
    # duringunbundle2 is answered with a bundle2 error:abort part.
    unbundle = inspect.getsource(wireprotov1server.unbundle)
    assert "proto.getpayload()" in unbundle and "duringunbundle2" in unbundle
    assert unbundle.index("for p in payload") < unbundle.index("exchange.unbundle(")


def test_importing_sshserve_registers_mercurials_bundle2_part_handlers() -> None:
    """hg and hgweb import ``mercurial.initialization`` before serving; a gateway that
    imports only sshserve must get the same, or every push fails ("missing support
    for replycaps"). A fresh interpreter: this one has likely run hgweb already."""
    code = ("import hostd.hg.sshserve\n"
            "from mercurial import tables\n"
            "assert b'replycaps' in tables.bundle2_part_handler_mapping\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
