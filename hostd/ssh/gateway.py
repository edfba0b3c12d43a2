"""The SSH gateway: the long-running process every sshd session of hostd is handed to.

sshd starts ``hostd-ssh`` (C, ``hostd-ssh.c``) twice per connection, never
an interpreter: as the ``AuthorizedKeysCommand`` and as the login shell of
the ``git`` and ``hg`` accounts. Both connect to this process's unix socket
(in the stack's 0700 run directory, so only the stack's own account can
claim a session) and send one :mod:`~hostd.ssh.wire` message. Each
connection gets a thread; ``max_sessions`` of them at most, past which a
session is told to retry and a key request gets no key.

Stopping (SIGTERM) closes the socket at once, so sshd's next connection is
refused cleanly, and waits up to ``grace`` seconds for the sessions that are
running: a push in progress completes and its client learns so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from hostd.ssh import wire

log = logging.getLogger(__name__)

#: Exit status of a session that could not be served (the client sees the message on stderr).
FAILED: Final = 1
BUSY: Final = b"hostd: too many SSH sessions right now; try again shortly\n"

#: ``(fields, stdin, stdout, stderr) -> exit status``; the descriptors stay the caller's.
SessionHandler = Callable[[tuple[str, ...], int, int, int], int]
#: ``(fingerprint, connection) -> authorized_keys text`` ("" for no key).
KeyHandler = Callable[[str, str], str]


class Gateway:
    """Accept ``hostd-ssh`` connections on ``path`` and hand each to its handler, in a thread."""

    def __init__(self, path: Path, *, sessions: SessionHandler, keys: KeyHandler,
                 max_sessions: int = 256, grace: float = 30.0) -> None:
        self.path = path
        self.sessions = sessions
        self.keys = keys
        self.grace = grace
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._running: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._listener: socket.socket | None = None

    def listen(self) -> None:
        """Bind the socket (replacing a stale one), readable and writable by this account only."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(128)
        self._listener = listener

    def serve_forever(self) -> None:
        """Accept until :meth:`close`; then wait for the running sessions (up to ``grace``)."""
        if self._listener is None:
            self.listen()
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._closing.is_set():
                    break
                raise
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True, name="ssh-connection")
            with self._lock:
                self._running.add(thread)
            thread.start()
        self._drain()

    def close(self) -> None:
        """Stop accepting (sshd's next connection is refused); :meth:`serve_forever` then drains."""
        self._closing.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _drain(self) -> None:
        with self._lock:
            running = list(self._running)
        if running:
            log.info("waiting up to %.0f s for %d SSH session(s)", self.grace, len(running))
        for thread in running:
            thread.join(self.grace)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(10)
                try:
                    message = wire.receive(conn)
                except wire.Empty:
                    return
                except (wire.BadMessage, OSError) as error:
                    log.warning("refused a connection to the SSH gateway: %s", error)
                    return
                conn.settimeout(None)
                if message.kind == wire.KEY:
                    self._key(conn, message)
                else:
                    self._session(conn, message)
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())

    def _key(self, conn: socket.socket, message: wire.Message) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("key lookup refused: %s", BUSY.decode().strip())
            return
        try:
            conn.sendall(self.keys(*message.fields).encode())
        except Exception:
            log.exception("key lookup failed")
        finally:
            self._slots.release()

    def _session(self, conn: socket.socket, message: wire.Message) -> None:
        stdin, stdout, stderr = message.fds
        status = FAILED
        try:
            if not self._slots.acquire(blocking=False):
                os.write(stderr, BUSY)
                return
            try:
                status = self.sessions(message.fields, stdin, stdout, stderr)
            except Exception:
                log.exception("SSH session failed")
                with contextlib.suppress(OSError):
                    os.write(stderr, b"hostd: internal error\n")
            finally:
                self._slots.release()
        finally:
            for fd in message.fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(bytes([status & 0xFF]))
