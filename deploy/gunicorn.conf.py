"""gunicorn settings shared by the git, hg and web pools.

The supervisor passes ``--bind`` and ``--name`` per pool; the rest is here.
Workers are threaded (gthread): the master's liveness timeout then measures
the worker's main loop, not a request, so a clone that streams for an hour
is not killed, while a wedged worker still is.  Our subclass of it only
accepts connections while it has a free thread (hostd/serve/worker.py), so
a request never waits behind another worker's long clones.
"""

import os

from hostd.git.inflight import InFlight, sweep
from hostd.ops.reap import WORKER_NAME
from hostd.settings import Settings, SettingsError

worker_class = "hostd.serve.worker.BalancedThreadWorker"
workers = int(os.environ.get("HOSTD_WORKERS", "2"))
threads = int(os.environ.get("HOSTD_THREADS", "4"))
timeout = 60
graceful_timeout = 30
keepalive = 75

# Mercurial sends its arguments in X-HgArg-N headers of about 1 KiB each:
# hundreds of them for repositories with many heads. HAProxy bounds the
# total request header size (tune.bufsize); these only must not be lower.
limit_request_fields = 32768
limit_request_field_size = 16384
limit_request_line = 16384

# singlemalt is the only place that trusts forwarded headers.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

# gunicorn 25+ opens a control socket under $HOME by default; the three pools
# would share one path. Operations go through HAProxy and the supervisor.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s rid=%({x-request-id}i)s "%(r)s" %(s)s %(B)s %(M)sms'

# A push (or a clone being copied into the pack cache) whose worker dies
# mid-way leaves its temporary file in the repository. Every such write is
# registered in the run directory while it lasts (hostd/git/inflight.py); the
# master removes a dead worker's leftovers as soon as it reaps the worker,
# and those of a whole pool that died (master included) when it starts again.
# `hostd maintain` stays the backstop, by file age.


def _sweep_inflight(server) -> None:  # noqa: ANN001 - gunicorn's arbiter
    try:
        directory = InFlight.of_run_dir(Settings.from_env().run_dir).directory
    except SettingsError as error:
        server.log.warning("in-flight writes not swept: %s", error)
        return
    for path in sweep(directory):
        server.log.warning("removed %s, left by a killed worker", path)


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    _sweep_inflight(server)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    _sweep_inflight(server)


# A worker whose master has died stops promptly, even in the middle of a long
# request (see hostd reap). The kernel sends it SIGTERM at once (gunicorn's
# graceful stop: no new connections, in-flight ones may finish), and a
# watchdog thread ends it ORPHAN_GRACE seconds later whatever it is doing:
# graceful_timeout (30 s) and the interpreter's wait for request threads
# could otherwise keep an orphan streaming a clone for an hour, holding the
# listening socket the restarted master needs. The restarted pool serves the
# client's retry; what a cut-off push left behind goes at the next sweep
# (the end of any push, a worker's death, a pool's start; see hostd/git/inflight.py).
ORPHAN_GRACE = float(os.environ.get("HOSTD_ORPHAN_GRACE", "5"))


# A receive that waits this long for a byte fails its request and frees the
# thread: a client that stops in the middle of a body (hostd/serve/worker.py).
READ_TIMEOUT = float(os.environ.get("HOSTD_READ_TIMEOUT", "60"))


def post_fork(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    worker.read_timeout = READ_TIMEOUT
    import ctypes
    import signal
    import threading
    import time

    master = worker.ppid  # the arbiter that forked us, even if it is already gone
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        # What tells `hostd reap` a worker from a master (hostd/ops/reap.py).
        libc.prctl(PR_SET_NAME, WORKER_NAME.encode())
    except OSError:
        pass

    def exit_when_orphaned() -> None:
        while os.getppid() == master:
            time.sleep(0.5)
        time.sleep(ORPHAN_GRACE)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, name="orphan-watchdog", daemon=True).start()
