"""git's own receive-pack behind the git pool: pushes stored and refs moved by git.

Where git is installed, a push (``POST .../git-receive-pack``) is handed to
``git receive-pack --stateless-rpc``, what ``git http-backend`` runs: its
ref commands and pack go to git's stdin as they arrive (a thread copies the
bounded body, :class:`hostd.git.body.BoundedBody`), its answer is streamed
back. The worker holds a chunk at a time, whatever the size of the push;
dulwich held a received pack about three times over.

What hostd keeps around git, and how:

- **Ref races** are git's own ref transactions: every update is a
  compare-and-swap on the old value the client sent, ``--atomic`` is one
  transaction, and a ref locked by another push is waited for
  (``core.filesRefLockTimeout``, :data:`REF_LOCK_MS`) instead of failing.
  A loser is told ``ng <ref> failed to update ref`` (``atomic transaction
  failed``), never ``ok``.
- **The push log**: the ref commands are read here before git starts
  (:func:`read_commands`), and git's report-status is read as it passes
  through untouched (side-band demultiplexed when the client asked for it,
  :class:`ReportReader`); each ref git reports ``ok`` is logged for the
  pusher. A failure to log is logged and never reaches the client.
- **The size limit**: a body over the limit stops being copied; git is given
  end-of-file, so it fails its unpack and removes its quarantine
  (``objects/tmp_objdir-incoming-*``: nothing of the push is stored). The rest of the
  body is then read and dropped (up to twice the limit) and the client gets
  hostd's own report, ``unpack <reason>`` and ``ng <ref> unpacker error``
  (:func:`refusal_report`), which git prints as "remote unpack failed:
  <reason>". A push whose ``Content-Length`` is over the limit gets that
  report without git being started. git writes nothing to stdout before it
  has read the whole pack, so the refusal is always in time.
- **Interrupted pushes** (client gone, corrupt pack): git sees end-of-file
  or a bad pack, fails its unpack and removes its quarantine itself. hostd
  never kills git (a SIGKILL in a ref update would leave ``.lock`` files):
  once the pack is in, the push completes even if the client went away. A
  git whose worker is killed gets end-of-file, and dies of SIGPIPE when it
  answers, leaving its quarantine (git removes it on a normal exit only). So
  each push is registered in flight (:mod:`hostd.git.inflight`) by its
  worker, and the worker's death has the quarantine removed at once. That
  is safe even under a git still running: git updates refs only after it
  has checked the pushed objects and moved them out of the quarantine, and
  fails the push if any went missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from webob import exc

from hostd.git.advert import NO_CACHE
from hostd.git.body import BoundedBody
from hostd.git.inflight import InFlight, Ticket
from hostd.git.process import GitRun, environment
from hostd.git.pushwire import Commands, ReportReader, refusal_report
from hostd.names import RepoName
from hostd.responses import text_error

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

#: How long a push waits for another push's lock on the same ref (ms), as the
#: old per-repository lock did (10 s); ref updates take milliseconds.
REF_LOCK_MS = 10_000

PushRecorder = Callable[[list[tuple[str, str, str]]], None]


class PushLogWriter(Protocol):
    """Where pushes are recorded: :class:`hostd.store.pushlog.PushLog`."""

    def record(self, repo: RepoName, username: str, updates: list[tuple[str, str, str]]) -> None: ...


def push_recorder(pushlog: PushLogWriter, repo: RepoName, username: str) -> PushRecorder:
    """Record the refs a push of ``username`` moved in ``repo``; a failure to log is logged, never raised."""

    def record(updates: list[tuple[str, str, str]]) -> None:
        try:
            pushlog.record(repo, username, updates)
        except Exception:
            # The refs have moved and the client is being told so; losing
            # the log line must not turn a landed push into an error.
            log.exception("push log: could not record %s for %s: %s", repo, username, updates)

    return record


def respond_refused(start_response: StartResponse, commands: Commands, body: BoundedBody,
                    reason: str) -> list[bytes]:
    """Drain the rest of the body (git reads the answer only once it has sent it all), then report."""
    log.info("push not stored: %s", reason)
    body.drain()
    start_response("200 OK", _result_headers())
    return [refusal_report(commands, reason)]


def _result_headers() -> list[tuple[str, str]]:
    return [("Content-Type", "application/x-git-receive-pack-result"), *NO_CACHE]


class ReceivePack:
    """Serve ``git-receive-pack`` requests with ``git receive-pack --stateless-rpc``."""

    def __init__(self, git: str, *, inflight: InFlight | None = None, ref_lock_ms: int = REF_LOCK_MS) -> None:
        self.git = git
        self.inflight = inflight
        self.ref_lock_ms = ref_lock_ms
        self._env = environment()

    def receive_pack(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path,
                     body: BoundedBody, commands: Commands, on_push: PushRecorder | None) -> Iterable[bytes]:
        """Answer one push whose ``commands`` have been read off ``body``; the rest goes to git as it arrives."""
        if not commands.updates:
            # git's probe before a push larger than http.postBuffer: a flush
            # alone, to which receive-pack answers nothing; no need to fork it.
            start_response("200 OK", _result_headers())
            return []
        ticket = self.inflight.begin(git_dir) if self.inflight is not None else None
        try:
            timeout = str(self.ref_lock_ms)
            run = GitRun.start(
                [self.git, "-c", f"core.filesRefLockTimeout={timeout}", "-c", f"core.packedRefsTimeout={timeout}",
                 "receive-pack", "--stateless-rpc", str(git_dir)],
                self._env, patient=True)
        except BaseException:
            if ticket is not None:
                ticket.end()
            raise
        push = _Push(run, ticket, git_dir)
        run.feed(commands.raw, body)
        try:
            first = run.read()
            # A refusal after git has read the whole pack (junk sent after it) does not undo the push.
            if run.refused is not None and b"unpack ok" not in first:
                push.finish()
                return respond_refused(start_response, commands, body, run.refused.reason)
            if not first:
                message = push.finish()
                if run.process.returncode != 0 or run.cut_off:
                    raise _failure(git_dir, run.process.returncode, message, run.cut_off)
        except BaseException:
            push.finish()
            raise
        start_response("200 OK", _result_headers())
        return _stream(first, push, commands, on_push)


def _stream(first: bytes, push: _Push, commands: Commands, on_push: PushRecorder | None) -> Iterator[bytes]:
    """Pass git's answer through; log the refs it reports ``ok`` once it is done (even if the client is not)."""
    report = ReportReader(commands.sideband)
    try:
        data = first
        while data:
            report.feed(data)
            yield data
            data = push.run.read()
    finally:
        while data := push.run.read():  # the client is gone: git still finishes, and says what landed
            report.feed(data)
        push.finish()
        if report.broken:
            log.warning("could not read git's report-status in %s; push not logged", push.git_dir)
        _record(report, commands, on_push)


def _record(report: ReportReader, commands: Commands, on_push: PushRecorder | None) -> None:
    if on_push is None or not report.ok:
        return
    ok = set(report.ok)
    landed = [(ref.decode(errors="replace"), old.decode(errors="replace"), new.decode(errors="replace"))
              for old, new, ref in commands.updates if ref in ok]
    if landed:
        on_push(landed)


class _Push:
    """One running ``git receive-pack`` (patient: see :class:`hostd.git.process.GitRun`) and its in-flight ticket."""

    def __init__(self, run: GitRun, ticket: Ticket | None, git_dir: Path) -> None:
        self.run = run
        self.ticket = ticket
        self.git_dir = git_dir
        self._finished = False

    def finish(self) -> str:
        """Let git finish, log a failure, end the ticket; returns the end of git's stderr ("" after the first call)."""
        if self._finished:
            return ""
        self._finished = True
        try:
            message = self.run.finish()
            if self.run.process.returncode != 0:
                log.warning("git receive-pack exited %d in %s: %s", self.run.process.returncode, self.git_dir, message)
            return message
        finally:
            if self.ticket is not None:
                self.ticket.end()


def _failure(git_dir: Path, returncode: int | None, message: str, cut_off: bool) -> exc.HTTPException:
    """The answer when git wrote nothing at all."""
    log.warning("git receive-pack exited %s without output in %s: %s", returncode, git_dir, message)
    if cut_off:
        return text_error(exc.HTTPBadRequest, "The receive-pack request body was cut off.")
    if "protocol error" in message or "expected" in message:
        return text_error(exc.HTTPBadRequest, "The receive-pack request was not understood.")
    return text_error(exc.HTTPInternalServerError, "git receive-pack failed.")
