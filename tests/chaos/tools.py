"""What the fault-injection scenarios share: the supervisor, /proc, the logs,
a proxy that slows clients down, and the report each scenario prints.

Every process signalled by these scenarios is found through the stack this
suite started (``supervisorctl pid`` of its own supervisord, and that
master's children in /proc), never by name.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.stackfixture import Stack
from tests.e2e.test_operations import ThrottleProxy

# --- The supervisor and /proc ---------------------------------------------------

def supervisorctl(stack: Stack, *args: str) -> str:
    """Run supervisorctl against this stack's supervisord; its output."""
    return stack.supervisorctl(*args)


def pool_master(stack: Stack, pool: str) -> int:
    """The PID of a pool's gunicorn master, as supervisord knows it (0: not running)."""
    answer = supervisorctl(stack, "pid", pool)
    return int(answer) if answer.isdigit() else 0


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (a master's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def rss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB$", text, re.MULTILINE)
    return int(match[1]) if match else 0


def sending(pids: list[int]) -> dict[int, int]:
    """Bytes waiting in the send queues of each process's established
    connections (TCP or unix, as ``ss`` reports them): a worker streaming to a
    slow client keeps its queue full, an idle one has nothing queued. The
    pools' traffic comes from HAProxy over unix sockets."""
    listing = subprocess.run(["ss", "-H", "-n", "-p", "-x", "-t"], capture_output=True, text=True, check=True)
    queued = dict.fromkeys(pids, 0)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] != "ESTAB":
            continue
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in queued:
                queued[pid] += int(fields[3])
    return queued


# --- Logs ----------------------------------------------------------------------------

class LogMark:
    """The end of a log file now; :meth:`lines` returns what was written since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").splitlines()


# The https frontend's log-format: "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST ..."
_HAPROXY_LINE = re.compile(r"^\S+:\d+ \[[^\]]+\] \S+ (\S+) \S+ (-?\d+) ")


def haproxy_statuses(lines: list[str]) -> list[tuple[str, int]]:
    """(backend/server, status) of each request logged in HAProxy's log lines."""
    return [(m[1], int(m[2])) for m in map(_HAPROXY_LINE.match, lines) if m]


def access_line(line: str) -> bool:
    """A gunicorn access-log line (``deploy/gunicorn.conf.py``: ``... rid=... "GET ..." 200``)."""
    return " rid=" in line and '"' in line


# --- HTTP and a slow network -----------------------------------------------------------

def get(stack: Stack, path: str, user: str | None = None, password: str | None = None,
        headers: dict[str, str] | None = None) -> int:
    """One HTTPS request through HAProxy; the status code (0: no answer)."""
    request = urllib.request.Request(stack.url(path), headers=headers or {})
    if user is not None:
        token = b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


class BothWays(ThrottleProxy):
    """A :class:`ThrottleProxy` that also slows the client's uploads (pushes)
    and counts them in :attr:`uploaded`."""

    def __init__(self, target: tuple[str, int], rate: int) -> None:
        self.uploaded = 0
        super().__init__(target, rate)

    def _pump(self, source: socket.socket, sink: socket.socket, index: int | None) -> None:
        if index is not None:
            super()._pump(source, sink, index)
            return
        while True:
            try:
                data = source.recv(16384)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
            with self.lock:
                self.uploaded += len(data)
            time.sleep(len(data) / self.rate)
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def spawn(stack: Stack, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """A client in its own session, so the scenario can kill it and its helpers."""
    return subprocess.Popen(list(args), cwd=cwd, env=stack.clients.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_client(process: subprocess.Popen[str]) -> None:
    """SIGKILL a client started by :func:`spawn` (its process group: ours alone)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# --- The report ---------------------------------------------------------------------------

@dataclass
class Report:
    """What a scenario broke, what the clients saw, and the evidence nothing was lost."""

    scenario: str
    broken: list[str] = field(default_factory=list)
    saw: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (f"[{self.scenario}]\n  broken: {'; '.join(self.broken) or '-'}\n"
                f"  clients saw: {'; '.join(self.saw) or '-'}\n"
                f"  evidence: {'; '.join(self.evidence) or '-'}")
