"""git over SSH: fetches run git's upload-pack on the session itself, pushes go through the push path of HTTPS.

A clone or fetch needs nothing of hostd once it is allowed, so
``git upload-pack`` is started on the session's own descriptors (what
``git-shell`` does): git talks to sshd directly, protocol v2 included
(``GIT_PROTOCOL``, the only variable sshd accepts from the client, checked
as the HTTPS ``Git-Protocol`` header is: :func:`hostd.git.wire.valid_protocol`).

A push is the HTTPS push, byte for byte, on a stateful connection: the
ref advertisement hostd already builds for ``info/refs`` is written, then
the client's commands and pack are read through the same
:class:`~hostd.git.body.BoundedBody` (the push size limit) into
:class:`~hostd.git.receive.ReceivePack` (``git receive-pack
--stateless-rpc``: ref races, quarantine clean-up, the report read for the
push log). So an SSH push is refused, logged and reported exactly as an
HTTPS one. receive-pack has no protocol v2, and git never asks for it on a push.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import BinaryIO

from webob import exc

from hostd.git import fallback
from hostd.git.body import BodyRefused, BoundedBody, mib
from hostd.git.process import environment
from hostd.git.pushwire import read_commands
from hostd.git.receive import PushRecorder, ReceivePack
from hostd.git.wire import valid_protocol
from hostd.store.refstate import PerRefState

log = logging.getLogger(__name__)

class GitOverSsh:
    """Serve ``git-upload-pack`` and ``git-receive-pack`` sessions on a repository directory."""

    def __init__(self, git: str, receive: ReceivePack, *, max_push_bytes: int,
                 adverts: PerRefState | None = None) -> None:
        self.git = git
        self.receive = receive
        self.max_push_bytes = max_push_bytes
        self.adverts = adverts if adverts is not None else PerRefState()

    def upload_pack(self, git_dir: Path, protocol: str, stdin: int, stdout: int, stderr: int) -> int:
        """Run ``git upload-pack`` on the session's descriptors; its exit status."""
        process = subprocess.Popen([self.git, "upload-pack", "--strict", str(git_dir)],
                                   stdin=stdin, stdout=stdout, stderr=stderr, env=environment(valid_protocol(protocol)))
        return process.wait()

    def receive_pack(self, git_dir: Path, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO,
                     on_push: PushRecorder | None) -> int:
        """One push: advertise, read the commands and pack (bounded), let git store it, report; exit status."""
        stdout.write(self.adverts.get(git_dir, "receive-pack", lambda: fallback.receive_pack_refs(git_dir)))
        stdout.flush()
        too_large = f"push is larger than the server's limit of {mib(self.max_push_bytes)}"
        body = BoundedBody(stdin, self.max_push_bytes, too_large)
        try:
            commands = read_commands(body)
        except BodyRefused as error:
            stderr.write(f"hostd: {error.reason}\n".encode())
            return 1
        if not commands.updates:
            return 0  # nothing to push: the client sent a flush and is done
        status: list[str] = []
        try:
            answer = self.receive.receive_pack({}, lambda line, headers: status.append(line), git_dir, body,
                                               commands, on_push)
        except exc.HTTPException as error:  # git wrote nothing at all: what the HTTPS client would read
            stderr.write(f"hostd: {error.text.strip()}\n".encode())
            return 1
        try:
            for chunk in answer:
                stdout.write(chunk)
                stdout.flush()
        except BrokenPipeError:
            log.info("push to %s: the client left before the report", git_dir)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        return 0 if status and status[0].startswith("200") else 1

