"""Start, check and stop a whole stack under supervisord.

``python -m hostd.ops.stack run|up|down|reload`` backs ``make run``, ``make up``,
``make down`` and ``make reload``; ``env`` prints the ``HOSTD_*``
environment the systemd units of deploy/systemd read
(``/etc/hostd/hostd.env``). The end-to-end tests use the same functions, so
what the tests start is exactly what an operator runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hostd.ops import haproxy, listeners, peers, pooladmin, postgres, sshd, tls
from hostd.ops.bootstrap import DEMO_GIT, DEMO_USER, demo_clone_lines, initialize, ssh_clone_commands
from hostd.ops.haproxy import POOLS, PoolError, StackError
from hostd.ops.haproxy import command as haproxy_command
from hostd.ops.readiness import pools_problem, probe
from hostd.settings import PROJECT_ROOT, ROLE_PROGRAMS, Settings, SettingsError
from hostd.store.database import DatabaseUnavailable
from hostd.store.legacy import LegacyImportError

SUPERVISORD_CONF = PROJECT_ROOT / "deploy" / "supervisord.conf"
#: Every program of deploy/supervisord.conf.
PROGRAMS = tuple(dict.fromkeys(program for programs in ROLE_PROGRAMS.values() for program in programs))


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if found is None:
        raise StackError(f"{name} is not installed (Debian: apt-get install {name})")
    return found


def environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment supervisord, HAProxy and the pools run with."""
    env = dict(os.environ if base is None else base)
    ports = settings.ports
    concurrency = str(settings.workers * settings.threads)
    env.update(
        HOSTD_ROOT=str(PROJECT_ROOT),
        HOSTD_DATA=str(settings.data_dir),
        HOSTD_BIND=settings.bind,
        HOSTD_HTTPS_PORT=str(ports.https),
        HOSTD_HTTP_PORT=str(ports.http),
        HOSTD_STATS_PORT=str(ports.stats),
        HOSTD_PEERS_PORT=str(ports.peers),
        HOSTD_GIT_PORT=str(ports.git),
        HOSTD_HG_PORT=str(ports.hg),
        HOSTD_WEB_PORT=str(ports.web),
        HOSTD_MEMCACHED_PORT=str(ports.memcached),
        HOSTD_QUEUE_PORT=str(ports.queue),
        HOSTD_GIT_MAXCONN=concurrency,
        HOSTD_HG_MAXCONN=concurrency,
        HOSTD_WEB_MAXCONN=concurrency,
        HOSTD_MAX_PUSH_BYTES=str(settings.max_push_bytes),
        HOSTD_GIT_PACK=settings.git_pack,
        HOSTD_TRUSTED_PROXIES=",".join(settings.trusted_proxies),
        HOSTD_PUBLIC_HOST=settings.public_host,
        # Where HAProxy redirects plain HTTP to: the configured URL, never
        # the client's Host header.
        HOSTD_PUBLIC_URL=settings.base_url,
        HOSTD_WORKERS=str(settings.workers),
        HOSTD_THREADS=str(settings.threads),
        HOSTD_SHARD=settings.shard,
        # haproxy.cfg's "localpeer": which peer of peers.cfg this HAProxy is.
        HOSTD_LB_NAME=settings.lb_name,
        **tls.environment(settings),
        HOSTD_HAPROXY_DIR=str(PROJECT_ROOT / "haproxy"),
        HOSTD_RUN_DIR=str(settings.run_dir),
        HOSTD_LOG_DIR=str(settings.log_dir),
        HOSTD_VENV_BIN=str(Path(sys.executable).parent),
        HOSTD_HAPROXY=_tool("haproxy"),
        HOSTD_MEMCACHED_BIN=_tool("memcached"),
        HOSTD_POSTGRES_DIR=str(settings.postgres_dir),
        **postgres.supervisor_environment(settings),
        **sshd.supervisor_environment(settings),
        **settings.background.environ(),
    )
    env.update(_home_backends(settings))
    # deploy/supervisord.conf starts the programs of this host's roles only.
    for program in PROGRAMS:
        env[f"HOSTD_{program.upper()}_AUTOSTART"] = "true" if _starts(settings, program) else "false"
    if settings.database_url is not None:
        env["HOSTD_DATABASE_URL"] = settings.database_url
    if settings.memcached_nodes:
        env["HOSTD_MEMCACHED"] = ",".join(settings.memcached_nodes)
    if settings.peers:
        env["HOSTD_PEERS"] = ",".join(f"{peer.name}={peer.address}" for peer in settings.peers)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _starts(settings: Settings, program: str) -> bool:
    """Whether supervisord starts ``program`` here: this host's roles run it, and it can run."""
    return settings.runs(program) and (program != "sshd" or sshd.available() is None)


def _home_backends(settings: Settings) -> dict[str, str]:
    """Where haproxy.cfg's home backends send each pool's requests, and check its health.

    A pool on this host is reached over a unix socket in the 0700 run
    directory: only this installation's user can connect there, so only
    HAProxy's X-Forwarded-For is believed (HOSTD_TRUSTED_PROXIES=unix). Its
    health checks go to the pool's TCP port, the side door its worker
    answers even when every request thread is busy. A pool on another host
    (``HOSTD_GIT_SERVER`` ...) gets both on its TCP port; that host believes
    this load balancer by its address (its HOSTD_TRUSTED_PROXIES).
    """
    env = {"HOSTD_ROLES": ",".join(sorted(settings.roles))}
    for pool in POOLS:
        remote = settings.pool_server(pool)
        host, port = remote if remote is not None else (settings.bind, getattr(settings.ports, pool))
        name = pool.upper()
        if remote is not None:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            env[f"HOSTD_{name}_SERVER"] = env[f"HOSTD_{name}_ADDR"] = address
        else:
            env[f"HOSTD_{name}_ADDR"] = f"unix@{settings.pool_socket(pool)}"
        env[f"HOSTD_{name}_CHECK_HOST"] = host
        env[f"HOSTD_{name}_CHECK_PORT"] = str(port)
    return env


def supervisord_pid(settings: Settings) -> int | None:
    """The PID of this stack's supervisord, if one is running."""
    try:
        pid = int((settings.run_dir / "supervisord.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def health_problem(settings: Settings) -> str | None:
    """None when every pool and the HAProxy this host runs answer their health checks;
    ForeignStack when a pool of another data directory answers on a port of ours."""
    problem = pools_problem(settings)
    if problem is not None:
        return problem
    if settings.runs("sshgate"):
        problem = sshd.health_problem(settings, sshd_runs=_starts(settings, "sshd"))
        if problem is not None:
            return problem
    if not settings.runs("haproxy"):
        return None
    context = tls.client_context(settings)
    try:
        status, _ = probe(f"https://{settings.bind}:{settings.ports.https}/healthz", context)
    except OSError as error:
        return f"HAProxy on port {settings.ports.https}: {error}"
    if status != 200:
        return f"HAProxy on port {settings.ports.https}: /healthz answered {status}"
    try:
        rows = haproxy.stat(settings, types=haproxy.BACKENDS)
    except PoolError as error:
        return str(error)
    for row in rows:
        if row["pxname"] in POOLS and row["status"] != "UP":
            return f"HAProxy backend {row['pxname']} is {row['status']}"
    return None


def wait_healthy(
    settings: Settings, timeout: float = 60.0, alive: Callable[[], bool] | None = None
) -> None:
    """Block until :func:`health_problem` is None; StackError after ``timeout``,
    as soon as ``alive`` (default: supervisord's pid file) says it died, or
    at once when another stack's pool answers on a port of ours."""
    if alive is None:
        def alive() -> bool:
            return supervisord_pid(settings) is not None
    deadline = time.monotonic() + timeout
    problem = health_problem(settings)
    while problem is not None:
        if time.monotonic() > deadline:
            raise StackError(f"stack not healthy after {timeout:.0f}s: {problem}")
        if not alive():
            raise StackError(f"supervisord exited; see {settings.log_dir}: {problem}")
        time.sleep(0.2)
        problem = health_problem(settings)


def start(settings: Settings, *, foreground: bool = False) -> subprocess.Popen[bytes] | None:
    """Initialize the data directory if needed and start supervisord.

    In the foreground the caller gets the supervisord process to wait on;
    otherwise supervisord daemonizes and this returns None. StackError before
    anything is started or written when one of its ports is taken (:mod:`hostd.ops.listeners`).
    """
    if supervisord_pid(settings) is not None:
        raise StackError(f"a stack is already running for {settings.data_dir}")
    taken = listeners.taken(listeners.listeners(settings, starts=lambda program: _starts(settings, program)))
    if taken is not None:
        raise StackError(taken)
    demo = initialize(settings)
    if demo is not None:
        print(f"Demo user {demo.username!r}, password {demo.password!r} "
              f"(shown once; kept 0600 in {settings.data_dir / 'demo-password'})", flush=True)
    _ensure_server_state_file(settings)
    peers.write_peers_file(settings)
    if _starts(settings, "sshd"):
        sshd.prepare(settings)
    elif settings.runs("sshd"):
        print(f"hostd: {sshd.available()}", flush=True)
    env = environment(settings)
    command = [str(Path(sys.executable).parent / "supervisord"), "-c", str(SUPERVISORD_CONF)]
    if foreground:
        return subprocess.Popen(command + ["-n"], env=env)
    subprocess.run(command, env=env, check=True)
    # supervisord writes its pid file only after it has daemonized.
    deadline = time.monotonic() + 15
    while supervisord_pid(settings) is None:
        if time.monotonic() > deadline:
            raise StackError(f"supervisord did not start; see {settings.log_dir}/supervisord.log")
        time.sleep(0.05)
    return None


def stop(settings: Settings, timeout: float = 60.0) -> bool:
    """Stop this stack's supervisord (and so every process under it)."""
    pid = supervisord_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    raise StackError(f"supervisord (pid {pid}) did not stop within {timeout:.0f}s")


def _server_state_file(settings: Settings) -> Path:
    return settings.run_dir / "haproxy.state"


def _ensure_server_state_file(settings: Settings) -> None:
    """HAProxy warns at start when its server-state file is missing; "1" is
    the format version line of an empty state."""
    state = _server_state_file(settings)
    if not state.exists():
        state.write_text("1\n")


#: How long a reload waits for the worker to be able to hand over its tables.
PEERS_READY_SECONDS = 10.0
_PEERS_FLAGS = re.compile(r" id=hostd .*?flags=0x([0-9a-f]+)")


def peers_ready(settings: Settings) -> bool:
    """Whether HAProxy's worker would hand its stick tables to a successor now.

    A worker that had no predecessor or peer to learn from (the first after
    a cold start) spends its first 5 s waiting for remote peers, and HAProxy
    2.6 hands nothing over in that window (see haproxy/peers.cfg). Both low
    bits of the section's flags set means it is done.
    """
    match = _PEERS_FLAGS.search(haproxy_command(settings, "show peers"))
    return match is not None and int(match[1], 16) & 0x3 == 0x3


def reload_haproxy(settings: Settings) -> None:
    """Hitless HAProxy reload: save the servers' runtime state (drained,
    disabled, added), then SIGUSR2 the master, which starts new workers with
    the new config and lets the old ones finish their connections. It waits
    first (up to :data:`PEERS_READY_SECONDS`) until the worker can hand its
    failed-login counts to the new one, and renders the peers section
    (:mod:`hostd.ops.peers`) again from the settings; StackError, before
    anything, when HAProxy runs as another peer than ``HOSTD_LB_NAME``.

    The state file restores drained and disabled servers of haproxy.cfg;
    servers added at run time are not in it, so :mod:`hostd.ops.pooladmin` adds
    them back to the new worker. Returns once the new worker answers.
    """
    peers.check_reload(settings)
    deadline = time.monotonic() + PEERS_READY_SECONDS
    while not peers_ready(settings) and time.monotonic() < deadline:
        time.sleep(0.1)
    before = pooladmin.snapshot(settings)
    state = haproxy_command(settings, "show servers state")
    if state.startswith("1"):
        tmp = _server_state_file(settings).with_suffix(".tmp")
        tmp.write_text(state)
        tmp.replace(_server_state_file(settings))
    peers.write_peers_file(settings)
    tls.build_served_pem(settings)  # a renewed HOSTD_TLS_CERT is served from this reload on
    env = environment(settings)
    subprocess.run(
        [env["HOSTD_VENV_BIN"] + "/supervisorctl", "-c", str(SUPERVISORD_CONF), "signal", "USR2", "haproxy"],
        env=env, check=True,
    )
    pooladmin.restore(settings, before)


def _announce(settings: Settings) -> None:
    print("\nhostd is up.", flush=True)
    for line in demo_clone_lines(settings):  # "hostd trust --install" first while clients need it
        print(line)
    if _starts(settings, "sshd"):
        print(f"Over SSH, once your key is added (hostd key add {DEMO_USER} < ~/.ssh/id_ed25519.pub):")
        for command in ssh_clone_commands(settings):
            print("  " + command)
        print("  SSH host keys: " + "; ".join(sshd.fingerprints(settings)))
    if _starts(settings, "queue"):
        print(f"Webhooks: hostd hook add {DEMO_GIT} URL   Queue: hostd queue status,"
              f" http://{settings.bind}:{settings.ports.queue}/metrics")
    demo = settings.data_dir / "demo-password"
    if demo.exists():  # every run: the password was shown on the first only
        print(f"Demo user {DEMO_USER!r}: password in {demo} (mode {demo.stat().st_mode & 0o777:04o})")
    print(f"Web: {settings.base_url}/   Stats: http://{settings.bind}:{settings.ports.stats}/stats"
          f"   Logs: {settings.log_dir}", flush=True)


def run(settings: Settings) -> int:
    """``make run``: start in the foreground; Ctrl-C stops everything."""
    process = start(settings, foreground=True)
    assert process is not None

    def forward(signum: int, _frame: object) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        wait_healthy(settings, alive=lambda: process.poll() is None)
        _announce(settings)
    except StackError as error:
        print(f"hostd: {error}", file=sys.stderr)
        forward(signal.SIGTERM, None)
    return process.wait()


def main(argv: list[str]) -> int:
    try:
        settings = Settings.from_env()
        if argv == ["run"]:
            return run(settings)
        if argv == ["up"]:
            start(settings)
            try:
                wait_healthy(settings)
            except StackError:
                stop(settings)
                raise
            _announce(settings)
            return 0
        if argv == ["down"]:
            print("stopped" if stop(settings) else "not running")
            return 0
        if argv == ["reload"]:
            reload_haproxy(settings)
            return 0
        if argv == ["env"]:
            # What the systemd units of deploy/systemd read (/etc/hostd/hostd.env).
            for name, value in sorted(environment(settings, base={}).items()):
                if name.startswith("HOSTD_"):
                    print(f"{name}={value}")
            return 0
    except (StackError, SettingsError, LegacyImportError, DatabaseUnavailable,
            subprocess.CalledProcessError) as error:
        print(f"hostd: {error}", file=sys.stderr)
        return 1
    print("usage: python -m hostd.ops.stack run|up|down|reload|env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
