"""HAProxy's admin socket: one command in, one answer out, parsed into rows.

Everything that asks HAProxy about the pools at run time (``hostd pool``,
``hostd traffic``, a hitless reload) goes through :func:`command`, and reads
``show stat`` and ``show servers state`` with the two parsers here, so an
unreachable socket and an unexpected answer are reported one way::

    rows = haproxy.stat(settings)              # every backend, frontend and server
    state = haproxy.servers_state(settings, "git")
"""

from __future__ import annotations

import csv
import socket

from hostd.settings import POOLS, Settings

__all__ = ["POOLS"]  # the worker pools, which are also HAProxy's home backend names

#: ``show stat`` type masks (doc/management.txt): 2 backends, 4 servers.
BACKENDS = 2
SERVERS = 4


class StackError(Exception):
    """The stack did not come up (or down) as asked; the message says why."""


class PoolError(StackError):
    """HAProxy refused a command, or could not be reached; the message says which.

    A StackError, so ``python -m hostd.ops.stack reload`` reports it in one line."""


def command(settings: Settings, line: str) -> str:
    """Send one command to HAProxy's admin socket and return its answer.

    PoolError when the socket cannot be reached: the stack is not running.
    """
    path = settings.run_dir / "haproxy.sock"
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(path))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as error:
        raise PoolError(f"HAProxy admin socket {path}: {error}; is the stack running?") from None
    return b"".join(chunks).decode()


def stat(settings: Settings, proxy: str = "-1", types: int = BACKENDS | SERVERS) -> list[dict[str, str]]:
    """``show stat`` rows of ``proxy`` (a backend name, or -1 for all) of the given ``types``."""
    answer = command(settings, f"show stat {proxy} {types} -1")
    if answer.startswith("No such proxy"):
        raise PoolError(f"no backend {proxy!r}")
    return parse_stat_csv(answer)


def servers_state(settings: Settings, backend: str = "") -> dict[tuple[str, str], dict[str, str]]:
    """``show servers state`` of ``backend`` (or of all), keyed by (backend, server)."""
    return parse_servers_state(command(settings, f"show servers state {backend}".strip()))


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """Rows of ``show stat`` (CSV whose header line starts with ``# ``)."""
    if not text.startswith("# pxname,"):
        raise PoolError(f"unexpected answer to 'show stat': {text.strip()[:200]!r}")
    lines = [line for line in text[2:].splitlines() if line]
    return list(csv.DictReader(lines))


def parse_servers_state(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """Rows of ``show servers state`` (format 1), keyed by (backend, server)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("# "):
        raise PoolError(f"unexpected answer to 'show servers state': {text.strip()[:200]!r}")
    header = lines[1][2:].split()
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for line in lines[2:]:
        if not line or line.startswith("#"):
            continue
        row = dict(zip(header, line.split(), strict=False))
        rows[(row["be_name"], row["srv_name"])] = row
    return rows
