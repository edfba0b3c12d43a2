"""Whether the pools answering on a stack's ports are ready, and its own.

Each pool this host runs must answer ``/readyz`` on its TCP port, and name
in it the data directory it serves (:func:`hostd.guard.health.instance_id`).
A pool that names another (a second stack on our ports, an older one left
running) is refused with :class:`ForeignStack`, never taken for ours: its
repositories and accounts are not this stack's. :func:`hostd.ops.stack.health_problem`
asks this first, then the SSH gateway and HAProxy.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from hostd.guard.health import INSTANCE_HEADER, instance_id
from hostd.ops import listeners
from hostd.ops.haproxy import StackError
from hostd.settings import POOLS, Settings


class ForeignStack(StackError):
    """A port of this stack is answered by another data directory's pool: waiting will not change that."""


def probe(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str | None]:
    """The status of a GET of ``url`` (a health check), and the data directory the answer names (None: none)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return int(response.status), response.headers.get(INSTANCE_HEADER)
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers.get(INSTANCE_HEADER)


def pools_problem(settings: Settings) -> str | None:
    """None when every pool this host runs is ready; else the first problem, in one line.

    ForeignStack when a pool names another data directory than
    ``settings.data_dir`` (or none, where this one has an identity), with
    the port and who holds it.
    """
    ours = instance_id(settings.instance_file)
    for pool in (*POOLS, "queue"):
        if not settings.runs(pool):
            continue
        port = getattr(settings.ports, pool)
        try:
            status, instance = probe(f"http://{settings.bind}:{port}/readyz")
        except OSError as error:
            return f"{pool} pool on port {port}: {error}"
        if instance != ours:
            raise ForeignStack(f"port {port} ({pool} pool) answers for another data directory than"
                               f" {settings.data_dir}: {listeners.owner(port, settings.bind)}")
        if status != 200:
            return f"{pool} pool on port {port}: /readyz answered {status}"
    return None
