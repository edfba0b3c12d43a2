"""Composition root of the SSH gateway: ``python -m hostd.serve.sshgate`` (supervisord's ``sshgate``).

One process, built from the same services as the pools (:func:`hostd.serve.wsgi.build_services`:
the records cache and its change feed, the verifier's memcached, the
throttle, the flags, the push log), so an SSH session is decided by the
very policy objects that decide HTTPS requests. It listens on its unix
socket for sshd (:mod:`hostd.ssh.gateway`) and, on a host with the storage
role, on its TCP relay port for sessions other hosts' gateways hand over
(:mod:`hostd.ssh.relay`).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from hostd import logsetup
from hostd.git.inflight import InFlight
from hostd.git.receive import ReceivePack
from hostd.hg import app as hgapp
from hostd.hg import hooks as hgpushlog
from hostd.hg import sshserve
from hostd.serve.wsgi import build_services, repository_policy
from hostd.settings import Settings, SettingsError
from hostd.ssh import relay
from hostd.ssh.gateway import Gateway
from hostd.ssh.gitserve import GitOverSsh
from hostd.ssh.lookup import KeyRequests, RememberedKeys
from hostd.ssh.session import Sessions
from hostd.store.keys import Keys

log = logging.getLogger(__name__)


def build() -> tuple[Gateway, relay.RelayServer | None]:
    """The gateway (and the relay listener of a storage host), wired from the settings."""
    logsetup.configure()
    settings = Settings.from_env()
    services = build_services(settings)
    git = shutil.which("git")
    if git is None:
        raise SettingsError("the SSH gateway needs git on PATH")
    ui = hgapp.base_ui()
    limit = settings.max_push_bytes

    def hg(repo_dir: Path, fin: BinaryIO, fout: BinaryIO, ferr: BinaryIO, *,
           recorder: hgpushlog.PushRecorder, may_write: Any) -> int:
        return sshserve.serve_stdio(ui, repo_dir, fin, fout, ferr, recorder=recorder, may_write=may_write,
                                    max_push_bytes=limit)

    keys = RememberedKeys(Keys(services.accounts.db))
    stores = settings.runs("git") or settings.runs("hg")
    secret = settings.secret_file.read_bytes()
    sessions = Sessions(
        keys=keys,
        policies={vcs: repository_policy(services, vcs) for vcs in ("git", "hg")},
        storage=services.storage,
        # A load balancer's shard is its home backends' (HAProxy), not one it stores: it relays every session.
        shard=settings.shard if stores else None,
        flags=services.flags,
        pushlog=services.pushlog,
        git=GitOverSsh(git, ReceivePack(git, inflight=InFlight.of_run_dir(settings.run_dir)), max_push_bytes=limit),
        hg=hg,
        throttle=services.throttle,
        relay=relay.Relay(services.accounts.db, secret, port=settings.ports.ssh_relay),
    )
    gateway = Gateway(settings.ssh_socket, sessions=sessions, keys=KeyRequests(keys, services.throttle))
    server = None
    if stores:
        server = relay.RelayServer((settings.bind, settings.ports.ssh_relay), sessions, secret)
    return gateway, server


def main() -> int:
    gateway, server = build()
    gateway.listen()
    if server is not None:
        threading.Thread(target=server.serve_forever, daemon=True, name="ssh-relay").start()

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: the SSH gateway stops taking sessions", signum)
        gateway.close()
        if server is not None:
            server.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("SSH gateway listening on %s", gateway.path)
    gateway.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
