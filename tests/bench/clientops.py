"""What the VCS benchmark does with clients: timed git and hg commands, checks, wrk, new commits.

Every command runs with the end-to-end tests' :class:`Clients` environment
(a temporary HOME that trusts the stack's CA, never prompts); a failing
command raises :class:`BenchError` with its output, so a broken clone can
never be reported as a fast one.
"""

from __future__ import annotations

import difflib
import http.client
import random
import re
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench.common import BenchError
from tests.bench.interference import Monitor
from tests.e2e.stackfixture import VENV_BIN, Clients

#: Fixed author and date: the generated commits are byte-identical in every run.
AUTHOR = "Bench <bench@example.com>"
DATE = 1_700_000_000
WRK_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
WRK_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors:\s+connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True, slots=True)
class RandomFile:
    """A file of ``size`` bytes from ``random.Random(seed)``: the same bytes in every run."""

    path: str
    size: int
    seed: int


class Runner:
    """git and hg under the benchmark's client environment; timed commands are spans of ``monitor``."""

    def __init__(self, clients: Clients, monitor: Monitor) -> None:
        self.clients = clients
        self.monitor = monitor

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 600,
            input_bytes: bytes | None = None) -> str:
        """Run a client command; its stdout, or BenchError with the output if it failed."""
        try:
            result = subprocess.run(list(args), cwd=cwd, env=self.clients.env, capture_output=True,
                                    timeout=timeout, input=input_bytes)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"{' '.join(args)} did not finish in {timeout:.0f}s") from error
        if result.returncode != 0:
            raise BenchError(f"{' '.join(args)} exited {result.returncode}: "
                             f"{result.stderr.decode(errors='replace')[-1500:]}")
        return result.stdout.decode(errors="replace")

    def git(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
        return self.run("git", *args, cwd=cwd, timeout=timeout)

    def hg(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
        return self.run(str(VENV_BIN / "hg"), *args, cwd=cwd, timeout=timeout)

    def timed_git(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> float:
        with self.monitor.span() as span:
            self.git(*args, cwd=cwd, timeout=timeout)
        return span.wall

    def timed_hg(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> float:
        with self.monitor.span() as span:
            self.hg(*args, cwd=cwd, timeout=timeout)
        return span.wall

    def timed_wrk(self, url: str, seconds: float, authorization: str | None) -> float:
        """:func:`wrk`'s requests per second, the run a span of ``monitor`` like every timed command."""
        with self.monitor.span():
            return wrk(url, seconds, authorization)

    # -- what a repository holds -------------------------------------------------

    def served_refs(self, git_dir: Path) -> dict[str, str]:
        """Branches and tags of a bare repository on disk, by full name."""
        out = self.git("--git-dir", str(git_dir), "for-each-ref", "--format=%(objectname) %(refname)",
                       "refs/heads", "refs/tags")
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, name = line.split(" ", 1)
            refs[name] = sha
        return refs

    def cloned_refs(self, clone: Path) -> dict[str, str]:
        """A clone's remote-tracking branches and tags, named as on the server."""
        out = self.git("-C", str(clone), "for-each-ref", "--format=%(objectname) %(refname)",
                       "refs/remotes/origin", "refs/tags")
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, name = line.split(" ", 1)
            if name == "refs/remotes/origin/HEAD":
                continue
            refs[name.replace("refs/remotes/origin/", "refs/heads/", 1)] = sha
        return refs

    def check_clone(self, clone: Path, expected: dict[str, str]) -> None:
        """Every branch and tag of the server arrived, at the right commit."""
        got = self.cloned_refs(clone)
        if got != expected:
            missing = sorted(set(expected.items()) - set(got.items()))[:3]
            raise BenchError(f"clone {clone} differs from the server: {len(got)} refs vs {len(expected)}, "
                             f"e.g. missing {missing}")

    def rev(self, git_dir: Path, ref: str) -> str:
        return self.git("--git-dir", str(git_dir), "rev-parse", ref).strip()

    def default_branch(self, git_dir: Path) -> str:
        """The branch HEAD names, e.g. ``refs/heads/main``."""
        return self.git("--git-dir", str(git_dir), "symbolic-ref", "HEAD").strip()

    def hg_heads(self, repo: Path) -> tuple[str, frozenset[str]]:
        """(tip node, set of head nodes): what a clone or push must reproduce."""
        tip = self.hg("-R", str(repo), "log", "-r", "tip", "-T", "{node}").strip()
        heads = self.hg("-R", str(repo), "log", "-r", "heads(all())", "-T", "{node}\n").split()
        return tip, frozenset(heads)

    # -- new history -----------------------------------------------------------

    def add_commits(self, repo: Path, ref: str, base: str, count: int) -> str:
        """``count`` small commits on top of ``base`` in bare ``repo`` (one file growing, deltas well); the tip."""
        stream = bytearray()
        for number in range(1, count + 1):
            content = "".join(f"line {line} of the benchmark's incremental history\n"
                              for line in range(number * 20)).encode()
            message = f"bench: incremental commit {number}\n".encode()
            stream += f"commit {ref}\ncommitter {AUTHOR} {DATE + number} +0000\ndata {len(message)}\n".encode()
            stream += message
            if number == 1:
                stream += f"from {base}\n".encode()
            stream += f"M 100644 inline bench/incremental.txt\ndata {len(content)}\n".encode() + content + b"\n"
        self.run("git", "-C", str(repo), "fast-import", "--quiet", input_bytes=bytes(stream))
        return self.rev(repo, ref)

    def add_big_file(self, repo: Path, ref: str, base: str, size: int, seed: int = 7) -> str:
        """One commit adding ``size`` bytes of deterministic, incompressible data; the new tip."""
        data = random.Random(seed).randbytes(size)
        message = b"bench: one big incompressible file\n"
        stream = (f"commit {ref}\ncommitter {AUTHOR} {DATE} +0000\ndata {len(message)}\n".encode() + message
                  + f"from {base}\nM 100644 inline bench/big.bin\ndata {size}\n".encode() + data + b"\n")
        self.run("git", "-C", str(repo), "fast-import", "--quiet", input_bytes=stream, timeout=900)
        return self.rev(repo, ref)

    def add_random_files(self, repo: Path, ref: str, base: str, files: Sequence[RandomFile]) -> str:
        """One commit on ``base`` (a root commit if empty) adding each of ``files``, streamed into fast-import; the tip.

        One file's bytes are in memory at a time, not all of them.  Stored
        uncompressed (``core.compression=0``): zlib would only spend the
        client's time finding random bytes incompressible, and the pack sent
        is the same size either way.  Files above ``core.bigFileThreshold``
        are streamed to the pack without a delta search (fast-import would
        otherwise try each file against the one before: minutes of nothing).
        """
        message = b"bench: random files\n"
        command = ["git", "-c", "core.compression=0", "-c", "core.bigFileThreshold=1m", "-C", str(repo),
                   "fast-import", "--quiet"]
        with subprocess.Popen(command, env=self.clients.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) as process:
            assert process.stdin is not None and process.stderr is not None
            process.stdin.write(f"commit {ref}\ncommitter {AUTHOR} {DATE} +0000\ndata {len(message)}\n".encode()
                                + message + (f"from {base}\n".encode() if base else b""))
            for item in files:
                process.stdin.write(f"M 100644 inline {item.path}\ndata {item.size}\n".encode())
                process.stdin.write(random.Random(item.seed).randbytes(item.size))
                process.stdin.write(b"\n")
            process.stdin.close()
            errors = process.stderr.read()
            if process.wait(timeout=900) != 0:
                raise BenchError(f"fast-import of {len(files)} random files failed: {errors.decode(errors='replace')}")
        return self.rev(repo, ref)

    def add_hg_commits(self, repo: Path, count: int, patches: Path) -> str:
        """``count`` small commits on the working copy's parent, imported in one hg process; the new tip."""
        patches.mkdir(parents=True, exist_ok=True)
        previous: list[str] = []
        files = []
        for number in range(1, count + 1):
            current = [f"line {line} of the benchmark's incremental history\n" for line in range(number * 20)]
            diff = "".join(difflib.unified_diff(previous, current,
                                                "/dev/null" if number == 1 else "a/bench/incremental.txt",
                                                "b/bench/incremental.txt"))
            patch = patches / f"{number:03d}.patch"
            patch.write_text(f"# HG changeset patch\n# User {AUTHOR}\n# Date {DATE + number} 0\n"
                             f"bench: incremental commit {number}\n\n{diff}")
            files.append(str(patch))
            previous = current
        self.hg("-R", str(repo), "import", "-q", *files)
        return self.hg("-R", str(repo), "log", "-r", "tip", "-T", "{node}").strip()


def wrk(url: str, seconds: float, authorization: str | None, *, threads: int = 2, connections: int = 8) -> float:
    """Requests per second over ``seconds``; BenchError when any response was not 2xx/3xx."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "60s", url]
    if authorization:
        command += ["-H", f"Authorization: {authorization}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise BenchError(f"wrk {url} exited {result.returncode}: {result.stderr[-800:]}")
    return parse_wrk(result.stdout, url)


def parse_wrk(output: str, url: str = "") -> float:
    """wrk's requests per second; BenchError if it saw errors or non-2xx/3xx answers (a fast 401 is no result)."""
    rate = WRK_RATE.search(output)
    bad = WRK_BAD.search(output)
    errors = WRK_ERRORS.search(output)
    if rate is None:
        raise BenchError(f"wrk {url}: no rate in its output: {output[-800:]}")
    if bad is not None or (errors is not None and any(int(n) for n in errors.groups())):
        raise BenchError(f"wrk {url}: {bad.group(0) if bad else ''} {errors.group(0) if errors else ''}".strip())
    return float(rate.group(1))


def get_seconds(url: str, authorization: str | None, ca: Path, *, expect: bytes = b"") -> float:
    """One GET on a new connection (TLS handshake included, as each git process does); seconds."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Authorization": authorization} if authorization else {}
    start = time.perf_counter()
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                 context=ssl.create_default_context(cafile=str(ca)), timeout=120)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    elapsed = time.perf_counter() - start
    if response.status != 200 or not body.startswith(expect):
        raise BenchError(f"GET {url}: {response.status} {body[:100]!r}")
    return elapsed
