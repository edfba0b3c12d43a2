"""The worker pools at run time, through HAProxy's admin socket.

An operator drains a worker before maintenance, adds one under load and
removes it afterwards without a reload and without failing a clone::

    from hostd.ops import pooladmin
    pooladmin.drain(settings, "git", "git1")   # in-flight clones finish on git1
    pooladmin.add(settings, "git", "git2", "127.0.0.1:8111")
    for server in pooladmin.servers(settings):
        print(server.key, server.state, server.sessions)

Every function sends plain commands to ``<data>/run/haproxy.sock`` with
:func:`hostd.ops.haproxy.command`, parses the answer into frozen values and
turns whatever HAProxy refuses into a :class:`PoolError` that quotes it.
What each server's state is, :mod:`hostd.ops.poolstate` reads from the answers.

Servers added here are HAProxy 2.6 "dynamic servers". HAProxy forgets them
on a reload (they are not in haproxy.cfg), so :func:`snapshot` and
:func:`restore` carry them, with their drain or maintenance state, over to
the new worker; :func:`hostd.ops.stack.reload_haproxy` calls both.

They work on a storage shard's backends (``git-s2``) too, with their health
check; which servers those have is the database's to say (:mod:`hostd.ops.shardpools`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hostd.names import is_server_name, parse_ip_port
from hostd.ops import haproxy, routes
from hostd.ops.haproxy import PoolError
from hostd.ops.poolstate import Admin as Admin
from hostd.ops.poolstate import Server as Server
from hostd.ops.poolstate import merge
from hostd.settings import Settings

log = logging.getLogger(__name__)

#: Health-check settings of an added server. HAProxy applies no
#: ``default-server`` line to dynamic servers, so this repeats the one in
#: haproxy.cfg's defaults section (tests/hostd/ops/test_pooladmin.py checks that
#: they agree): a dead worker leaves the pool within ~4 s. The check itself
#: (``option httpchk GET /healthz``) is the backend's and applies as is.
CHECK_OPTIONS = "inter 2s fall 2 rise 2"


class Busy(PoolError):
    """A server to remove still has sessions in flight: it stays drained; try again later."""


class LastServer(PoolError):
    """The server is its backend's only one, or the last taking new sessions: without it, every request gets a 503."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The servers one HAProxy worker had, taken just before a reload."""

    worker_pid: int
    servers: tuple[Server, ...]


def worker_socket(settings: Settings, backend: str, name: str) -> Path:
    """Where an added worker listens for HAProxy when it is local: ``<run>/<backend>-<name>.sock``.

    A worker started with ``--bind unix:<this> --bind IP:PORT`` is sent its
    traffic over the socket, whose directory only this installation can
    enter, so it believes the client address HAProxy forwards; HAProxy checks
    its health on IP:PORT, the side door its threads answer even when busy.
    """
    return settings.run_dir / f"{backend}-{name}.sock"


def parse_address(text: str) -> str:
    """``IP:PORT`` in HAProxy's spelling (:func:`hostd.names.parse_ip_port`: never a host
    name, which HAProxy would not resolve for an added server); PoolError otherwise."""
    address = parse_ip_port(text)
    if address is None:
        raise PoolError(f"invalid address {text!r}: expected IP:PORT (an IP address), e.g. 127.0.0.1:8111")
    return address


def _checked_name(kind: str, name: str) -> str:
    # Also keeps ";" (HAProxy's command separator), spaces and newlines out
    # of the commands built below.
    if not is_server_name(name):
        raise PoolError(f"invalid {kind} name {name!r}: letters, digits, '.', '_', '-'")
    return name


# --- Talking to HAProxy --------------------------------------------------------

def _expect(settings: Settings, command: str, success: str = "") -> None:
    """Run a command whose good answer is ``success`` (or, by default, nothing)."""
    answer = haproxy.command(settings, command).strip()
    if answer.startswith(success) if success else not answer:
        log.info("haproxy: %s", command)
        return
    raise PoolError(f"HAProxy refused '{command}': {answer}")


def servers(settings: Settings, backend: str | None = None) -> list[Server]:
    """Every server of every backend (or of ``backend``), in configuration order."""
    scope = _checked_name("backend", backend) if backend else ""
    stat = haproxy.stat(settings, scope or "-1", haproxy.SERVERS)
    return merge(stat, haproxy.servers_state(settings, scope))


def server(settings: Settings, backend: str, name: str) -> Server:
    """One server; PoolError when the backend has none by that name."""
    for candidate in servers(settings, backend):
        if candidate.name == name:
            return candidate
    raise PoolError(f"no server {backend}/{name}")


def worker_pid(settings: Settings) -> int:
    """The PID of the HAProxy worker answering the admin socket."""
    match = re.search(r"^Pid: (\d+)$", haproxy.command(settings, "show info"), re.MULTILINE)
    if match is None:
        raise PoolError("HAProxy's 'show info' has no Pid line")
    return int(match[1])


def set_admin(settings: Settings, backend: str, name: str, admin: Admin) -> None:
    """``set server B/S state ready|drain|maint``.

    drain: no new sessions, in-flight ones (a clone, a push) run to their
    end, health checks go on; maint: no checks either.
    """
    key = f"{_checked_name('backend', backend)}/{_checked_name('server', name)}"
    _expect(settings, f"set server {key} state {admin.value}")


def spare(settings: Settings, backend: str, name: str, doing: str) -> Server:
    """The server, when its backend can do without it; :class:`LastServer` (saying what it was ``doing``) if not."""
    every = servers(settings, backend)
    target = next((candidate for candidate in every if candidate.name == name), None)
    if target is None:
        raise PoolError(f"no server {backend}/{name}")
    others = [other for other in every if other is not target]
    if not others or (target.serving and not any(other.serving for other in others)):
        raise LastServer(f"refusing to {doing} {target.key}: it is the {'last serving' if others else 'only'} "
                         f"server of backend {backend}, and every request to it would get a 503")
    return target


def drain(settings: Settings, backend: str, name: str, *, force: bool = False) -> None:
    """Take a server out of load balancing; its in-flight sessions finish.

    Not the backend's last serving server (:class:`LastServer`) unless ``force``.
    """
    if not force:
        spare(settings, backend, name, "drain")
    set_admin(settings, backend, name, Admin.DRAIN)


def ready(settings: Settings, backend: str, name: str) -> None:
    """Put a drained or maintained server back into load balancing."""
    set_admin(settings, backend, name, Admin.READY)


def _wait(settings: Settings, backend: str, name: str, done: Callable[[Server], bool],
          timeout: float) -> Server | None:
    """Poll the server until ``done(server)``; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        current = server(settings, backend, name)
        if done(current):
            return current
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _checked(current: Server) -> bool:
    """A check ran and passed, or enough failed for HAProxy to mark it down
    (it then needs ``rise`` passing checks before it gets any traffic)."""
    return current.check.startswith("Layer7 check passed") or not current.healthy


def add(settings: Settings, backend: str, name: str, address: str, maxconn: int | None = None,
        *, admin: Admin = Admin.READY, check_first: bool = True, timeout: float = 10.0) -> Server:
    """Add a worker to a backend; it takes traffic only once a check has passed.

    ``maxconn`` defaults to the backend's first server's, i.e. a worker of the
    same size (none yet in a shard's: no limit, as in shards.cfg). The server
    is created drained (checked, no traffic) and put in ``admin`` state after
    its first health-check verdict, so a worker that is not listening yet is
    never sent a clone. If no verdict comes within ``timeout`` seconds it
    stays drained and PoolError says so.
    ``check_first=False`` skips the wait, for a server known to be healthy
    (one carried over a reload): the check still runs, as for any server.
    """
    _checked_name("backend", backend)
    _checked_name("server", name)
    addr = parse_address(address)
    existing, shard = servers(settings, backend), routes.parse_shard_backend(backend) is not None
    if not (existing or shard):
        raise PoolError(f"backend {backend!r} has no server to copy settings from")
    maxconn = (existing[0].maxconn if existing else 0) if maxconn is None else maxconn
    limit = f" maxconn {maxconn}" if maxconn > 0 else ""
    key = f"{backend}/{name}"
    target, options = f"{addr} check", routes.SERVER_OPTIONS if shard else CHECK_OPTIONS
    local = worker_socket(settings, backend, name)
    # A shard's server is another host's pool, reached over the network as in shards.cfg.
    if not shard and local.is_socket():
        host, _, port = addr.rpartition(":")
        target = f"unix@{local} check addr {host.strip('[]')} port {port}"
    elif not shard:
        log.warning("%s: no %s, so HAProxy reaches it over TCP and it believes no forwarded client address "
                    "unless HOSTD_TRUSTED_PROXIES names HAProxy's", key, local)
    _expect(settings, f"add server {key} {target} {options}{limit}", "New server registered")
    # A dynamic server starts in maintenance with its health check off; the
    # check stays paused for as long as the server is in maintenance.
    _expect(settings, f"enable health {key}")
    if admin is not Admin.MAINT:
        _expect(settings, f"set server {key} state drain")
    if admin is Admin.READY:
        if check_first and _wait(settings, backend, name, _checked, timeout) is None:
            raise PoolError(f"{key} was added but no health check finished within {timeout:g}s; it stays "
                            f"drained: `hostd pool ready {backend} {name}` puts it in the pool")
        ready(settings, backend, name)
    return server(settings, backend, name)


def remove(settings: Settings, backend: str, name: str, timeout: float = 60.0, *, last: bool = False,
           force: bool = False) -> None:
    """Drain a server, wait for its sessions to end, and delete it.

    HAProxy deletes only a server in maintenance with no connection, so the
    order is drain (in-flight clones finish), wait, maint, delete. After
    ``timeout`` seconds (0: no wait) with sessions still running it stays
    drained and :class:`Busy` says so: run it again later. A backend's only
    server, or its last serving one, goes only with ``force``
    (:class:`LastServer`), or ``last`` (a shard's the database no longer names).
    """
    target = server(settings, backend, name) if last or force else spare(settings, backend, name, "remove")
    if target.admin is not Admin.MAINT:
        drain(settings, backend, name, force=True)
    idle = _wait(settings, backend, name, lambda s: s.sessions == 0, timeout)
    if idle is None:
        busy = server(settings, backend, name).sessions
        raise Busy(f"{target.key} still has {busy} session(s) after {timeout:g}s; "
                   "it stays drained, run remove again later")
    set_admin(settings, backend, name, Admin.MAINT)
    # Idle keep-alive connections to the server are closed by HAProxy a moment
    # after maintenance starts; until then the deletion is refused.
    deadline = time.monotonic() + 5
    while True:
        answer = haproxy.command(settings, f"del server {target.key}").strip()
        if answer.startswith("Server deleted"):
            log.info("haproxy: del server %s", target.key)
            return
        if time.monotonic() >= deadline or "connection" not in answer.lower():
            raise PoolError(f"HAProxy refused 'del server {target.key}': {answer}")
        time.sleep(0.2)


# --- Reloads ---------------------------------------------------------------------

def snapshot(settings: Settings) -> Snapshot:
    """What the running worker has, to hand over to the next one."""
    return Snapshot(worker_pid(settings), tuple(servers(settings)))


def wait_for_new_worker(settings: Settings, old_pid: int, timeout: float = 15.0) -> int:
    """Block until a worker other than ``old_pid`` answers the admin socket.

    Right after a reload both workers may hold the socket for a moment, so
    the new PID must answer three times in a row. PoolError on timeout,
    which usually means the new configuration did not load (see HAProxy's log).
    """
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 3:
        if time.monotonic() >= deadline:
            raise PoolError(f"no new HAProxy worker after {timeout:g}s (old worker {old_pid} "
                            "still answers): did the configuration load? See haproxy.log")
        try:
            pid = worker_pid(settings)
        except PoolError:
            pid = old_pid
        streak = streak + 1 if pid != old_pid else 0
        time.sleep(0.05)
    return pid


def restore(settings: Settings, before: Snapshot, timeout: float = 15.0) -> list[Server]:
    """After a reload: add back the servers the old worker had and the new one lacks.

    Static servers keep their drain/maintenance state through the server
    state file; dynamic ones are re-added here, each with its address,
    maxconn and administrative state. Returns the servers re-added.
    """
    wait_for_new_worker(settings, before.worker_pid, timeout)
    present = {(s.backend, s.name) for s in servers(settings)}
    restored, failed = [], []
    for old in before.servers:
        if (old.backend, old.name) in present:
            continue
        try:
            restored.append(add(settings, old.backend, old.name, old.worker_address, old.maxconn,
                                admin=old.admin, check_first=not old.healthy))
        except PoolError as error:
            failed.append(str(error))
            continue
        log.info("re-added %s after the reload (%s)", old.key, old.admin.value)
    if failed:
        raise PoolError("after the reload: " + "; ".join(failed))
    return restored
