"""Mercurial over SSH, served in-process: what ``hg -R REPO serve --stdio`` does, in a thread.

The SSH gateway authorizes a session for reading, then hands it here with
the client's three pipes; Mercurial's own SSH server
(``wireprotoserver.sshserver``) answers on them until the client hangs up.
No interpreter is started per connection. Usage (what the gateway does)::

    status = serve_stdio(base_ui, path, fin, fout, ferr,
                         recorder=hooks.PushRecorder(pushlog, repo, user),
                         may_write=lambda: None if can_write() else "read-only",
                         max_push_bytes=100 << 20)

Per session, nothing shared: a copy of the base ui (:func:`hostd.hg.app.base_ui`),
its own repository object, its own hooks (the push log's of
:mod:`hostd.hg.hooks`, installed on the copy whether or not the base has
them, and a write check closing over this session's ``may_write``) and its
own ``ui.environ`` carrying the push recorder, where the push-log hooks find
it exactly as they do in an hgweb request's environ: entries are written
only once the push's transaction has committed.

Writes: a session opens as a read; every transaction (``pretxnopen``) and
every pushkey (``prepushkey``) asks ``may_write()`` first, so a push, a
bookmark or a phase move is refused with the gateway's reason and nothing
changes (the hook runs before the push log's, and before anything is written).

Pushes: Mercurial reads a push's payload as ``<length>\\n<data>`` frames and
spools it to a temporary file before applying it. The client's stdin is
read through :class:`_Incoming`, which counts those frames (and only
those: reads never send any) and refuses the push as soon as its payload
would pass ``max_push_bytes``, or at its first frame when ``may_write()``
refuses, before a byte of it is spooled. The rest of the payload is read
and thrown away so the client gets Mercurial's own answer ("abort: ...");
past another ``max_push_bytes`` of it the session is cut off instead.

Process-global state, and why sharing it is safe:

* ``mercurial.initialization`` is imported once, here, as ``hg`` and hgweb
  do: it registers Mercurial's commands and bundle2 part handlers (without
  it every push fails, "missing support for replycaps"); idempotent.
* ``ui.protectedfinout`` would ``dup2`` over the process's fds 0 and 1 when
  the ui's streams are them (``hg serve --stdio`` relies on it); the
  streams given to Mercurial here have no ``fileno``, so it never does.
  Mercurial's messages go to ``ferr`` because the repository's ui writes
  there; only the protocol is written to ``fout``.
* ``hook.redirect`` (a module flag hgweb sets) makes every hook run ``dup2``
  the process's fd 1 onto fd 2; never set here. Do not run hgweb in the
  gateway process: concurrent hook runs would race on fd 1.
* ``ui.signal-safe-lock`` (an internal setting) is off, as hgweb has it:
  it swaps the process's SIGINT handler while a lock is taken.
* Locks are files naming host and pid; two threads of one process wait for
  each other like two processes (the pid is alive, so never stale).
* ``SSH_CLIENT`` is read from the process environment for the hook's ``url``
  argument (``remote:ssh:``); it says nothing about the session here.
* A bundle1 push (Mercurial before 3.x, or forced) refused while its payload
  is read has its ``abort:`` line written to the process's stderr by
  Mercurial; the client gets the reason on ``ferr`` from here.

Mercurial internals relied on (the version is pinned in pyproject.toml;
``test_mercurials_ssh_server_is_what_sshserve_was_written_against`` and the
end-to-end tests of tests/hostd/hg/test_sshserve.py fail if they change):
``wireprotoserver.sshserver(ui, repo)`` takes its streams from ``ui.fin`` and
``ui.fout`` and reads them only with ``readline()`` and ``read(n)``, a push's
payload as ``int(readline())``-framed chunks (the SSH framing of ``hg help
internals.wireprotocol``); ``wireprotov1server.unbundle`` spools the payload
before opening a transaction and answers an :class:`~mercurial.error.Abort`
that has ``duringunbundle2`` set with a bundle2 ``error:abort`` reply; a
``prepushkey`` :class:`~mercurial.error.HookAbort` becomes "pushkey-abort".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

from mercurial import error as hgerror
from mercurial import initialization, wireprotoserver
from mercurial.repo import factory as repo_factory

from hostd.hg import hooks as hgpushlog
from hostd.hg.app import recover_abandoned

log = logging.getLogger(__name__)

# Registers Mercurial's bundle2 part handlers and commands (see the module doc).
initialization.init()

MayWrite = Callable[[], str | None]

#: Hook name of the write check; its priority puts it before every other hook.
WRITE_CHECK: Final = b"hostd-ssh-write"
_WRITE_CHECK_PRIORITY: Final = b"1000"
#: Longest line the protocol has any use for (a command, ``name length``, a
#: frame length). Mercurial itself would read a line without end into memory.
MAX_LINE: Final = 4096
#: Reads are done in pieces: Python allocates a ``read(n)`` in full up front.
_PIECE: Final = 1 << 16
#: How a bundle2 payload begins (``HG20``); a bundle1 one begins ``HG10``.
_BUNDLE2: Final = b"HG2"

INTERNAL_ERROR: Final = b"hostd: internal error\n"
MALFORMED: Final = b"hostd: malformed request\n"
CANNOT_CHECK: Final = "push refused: write access cannot be checked now"
#: What a client's malformed request makes Mercurial raise while reading it.
_MALFORMED: Final = (ValueError, KeyError, IndexError, UnicodeError, hgerror.ParseError)


def serve_stdio(base_ui: Any, repo_path: Path, fin: BinaryIO, fout: BinaryIO, ferr: BinaryIO, *,
                recorder: hgpushlog.PushRecorder, may_write: MayWrite, max_push_bytes: int) -> int:
    """Serve one SSH session of Mercurial's wire protocol on ``repo_path``; its exit status.

    The caller has authorized the session for reading and owns the three
    files (blocking binary files, e.g. ``os.fdopen(fd, "rb")``); they are
    flushed, never closed. ``base_ui`` is only copied: it must not change
    while sessions run. ``may_write()`` is asked before every write and
    returns None to allow it or the reason shown to the client. Returns 0
    when the client closes stdin, 255 when Mercurial aborts the session
    (its ``abort:`` line goes to ``ferr``, as ``hg serve --stdio`` would
    print it), 1 for a malformed request, a cut-off push or an internal
    error (one ``hostd:`` line on ``ferr``, the details in the log).
    Safe to run in many threads at once.
    """
    incoming = _Incoming(fin, ferr, may_write=may_write, limit=max_push_bytes)
    try:
        ui = _session_ui(base_ui, ferr, recorder, may_write)
        if (repo_path / ".hg" / "store" / "journal").exists() and _refusal(may_write) is None:
            # Only a session that could push clears a killed push's journal (as for HTTP).
            recover_abandoned(repo_path, ui)
        repo = repo_factory.repository(ui, os.fsencode(repo_path))
        server_ui = ui.copy()
        server_ui.fin = incoming
        server_ui.fout = _Outgoing(fout)
        wireprotoserver.sshserver(server_ui, repo).serve_forever()
        status = 0
    except _CutOff as cut:
        log.info("hg ssh session on %s cut off: %s", repo_path, cut)
        status = _tell(ferr, b"%s\n" % cut.message, 1)
    except (BrokenPipeError, ConnectionResetError):
        log.info("hg ssh client of %s went away", repo_path)
        status = 1
    except hgerror.Abort as abort:
        log.info("hg ssh session on %s aborted: %s", repo_path, abort)
        status = _tell(ferr, abort.format(), 255)
    except hgerror.LockHeld as locked:
        log.warning("hg ssh session on %s gave up waiting for a lock: %s", repo_path, locked)
        status = _tell(ferr, b"abort: the repository is busy (locked); try again later\n", 255)
    except _MALFORMED as malformed:
        log.info("malformed hg ssh request on %s: %s: %s", repo_path, type(malformed).__name__, malformed,
                 exc_info=True)
        status = _tell(ferr, MALFORMED, 1)
    except Exception:
        log.exception("hg ssh session on %s failed", repo_path)
        status = _tell(ferr, INTERNAL_ERROR, 1)
    for stream in (fout, ferr):
        try:
            stream.flush()
        except OSError:
            pass
    return status


def _tell(ferr: BinaryIO, message: bytes, status: int) -> int:
    """Write ``message`` for the client (who may be gone); return ``status``."""
    try:
        ferr.write(message)
        ferr.flush()
    except OSError:
        pass
    return status


def _session_ui(base_ui: Any, ferr: BinaryIO, recorder: hgpushlog.PushRecorder, may_write: MayWrite) -> Any:
    """This session's own ui: messages to ``ferr``, its hooks and its recorder."""
    ui = base_ui.copy()
    ui.fin = _NoInput()
    ui.fout = ferr  # status lines ("adding changesets"): the client shows them as "remote: ..."
    ui.ferr = ferr
    for section, name, value in (
        (b"ui", b"nontty", b"true"),
        (b"ui", b"interactive", b"false"),
        (b"progress", b"disable", b"true"),
        (b"ui", b"signal-safe-lock", b"false"),
    ):
        ui.setconfig(section, name, value, b"hostd-ssh")
    hgpushlog.install_hooks(ui)
    check = _write_check(may_write)
    for hooktype in (b"pretxnopen", b"prepushkey"):
        name = hooktype + b"." + WRITE_CHECK
        ui.setconfig(b"hooks", name, check, b"hostd-ssh")
        ui.setconfig(b"hooks", b"priority." + name, _WRITE_CHECK_PRIORITY, b"hostd-ssh")
    # A new mapping for this session only: the process environment stays untouched.
    ui.environ = hgpushlog.with_recorder(ui.environ, recorder)
    return ui


def _write_check(may_write: MayWrite) -> Callable[..., bool]:
    """The hook that asks ``may_write()`` before a transaction or a pushkey; fails closed."""

    def check_write_access(ui: Any, repo: Any, hooktype: bytes, **kwargs: Any) -> bool:
        refusal = _refusal(may_write)
        if refusal is not None:
            # HookAbort: a pushkey reports it ("pushkey-abort: ..."), a push aborts with it.
            raise hgerror.HookAbort(refusal)
        return False

    return check_write_access


def _refusal(may_write: MayWrite) -> bytes | None:
    """``may_write()``'s reason as Mercurial prints it; failing to ask refuses (fails closed)."""
    try:
        reason = may_write()
    except Exception:
        log.exception("hg ssh: could not check write access")
        reason = CANNOT_CHECK
    return None if reason is None else reason.encode("utf-8", "replace")


def _size(limit: int) -> str:
    """``100 MiB`` for a whole number of MiB, bytes otherwise."""
    return f"{limit >> 20} MiB" if limit and limit % (1 << 20) == 0 else f"{limit} bytes"


class _CutOff(Exception):
    """A refused push whose payload goes on and on: the session ends here."""

    def __init__(self, message: bytes) -> None:
        super().__init__(message.decode("utf-8", "replace"))
        self.message = message


class _NoInput:
    """stdin for Mercurial's messages ui: it never prompts, and never reads the gateway's own stdin."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""


class _Outgoing:
    """The client's stdout as Mercurial's server writes it; no ``fileno`` (see the module doc)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            if not written:  # None: a non-blocking file that is full, which a session cannot wait on
                raise BrokenPipeError("the client's stdout takes no more")
            view = view[written:]
        return len(data)

    def flush(self) -> None:
        self._raw.flush()


class _Incoming:
    """The client's stdin as Mercurial's server reads it, with a push's limits.

    Mercurial reads a line for each command, ``name length`` lines followed
    by ``read(length)`` for arguments, and a push's payload as length lines
    (parsed with ``int``) each followed by ``read(length)``, up to ``0``. So
    a ``read`` right after a line that ``int`` accepts is payload, and any
    other one-word line starts a new command (and a new payload count). A
    client gains nothing by lying: a line Mercurial cannot parse ends the
    session, and no payload byte passes uncounted.
    """

    def __init__(self, raw: BinaryIO, ferr: BinaryIO, *, may_write: MayWrite, limit: int) -> None:
        self._raw = raw
        self._ferr = ferr
        self._may_write = may_write
        self._limit = limit
        self._framed = False  # the last line read was a payload frame's length
        self._payload: int | None = None  # this command's payload bytes so far; None: no payload yet
        self._bundle2 = False  # the payload is a bundle2 (all current clients push one)
        self._refusal: bytes | None = None

    def readline(self) -> bytes:
        line = self._raw.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ValueError("protocol line too long")
        self._framed = _frame_length(line) is not None
        if self._framed and self._payload is None:
            self._start_payload()
        elif not self._framed and len(line.split()) == 1:
            self._payload = None  # a new command
        return line

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("negative length")
        if not self._framed:
            return self._read(size)
        assert self._payload is not None
        self._framed = False
        if self._payload == 0:
            head = self._read(min(size, len(_BUNDLE2)))
            self._bundle2 = head == _BUNDLE2
        else:
            head = b""
        if self._refusal is not None or self._payload + size > self._limit:
            self._refuse(size - len(head))
        self._payload += size
        return head + self._read(size - len(head))

    def _start_payload(self) -> None:
        """A push's payload begins: ask now, so that a refused push spools nothing."""
        self._payload = 0
        self._refusal = _refusal(self._may_write)

    def _refuse(self, rest: int) -> None:
        """Throw the rest of the payload away, then raise the refusal into Mercurial's unbundle.

        Reading it all keeps the protocol in step, so the client gets the
        answer; past another limit's worth the session is cut off instead.
        """
        message = self._refusal or f"push refused: larger than the {_size(self._limit)} limit".encode()
        budget = self._limit
        while rest > 0:
            if rest > budget:
                raise _CutOff(message)
            budget -= self._discard(rest)
            rest = max(_frame_length(self._raw.readline(MAX_LINE + 1)) or 0, 0)
        self._framed, self._payload, self._refusal = False, None, None
        refusal = hgerror.Abort(message)
        if self._bundle2:
            # Mercurial's unbundle answers with a bundle2 error:abort part only when this is set.
            refusal.duringunbundle2 = True
        else:
            # A bundle1 client is answered "push failed", the reason going to Mercurial's stderr.
            self._ferr.write(message + b"\n")
            self._ferr.flush()
        raise refusal

    def _discard(self, size: int) -> int:
        """Read ``size`` bytes (fewer at end of input) into nothing; how many were read."""
        done = 0
        while done < size:
            piece = self._raw.read(min(size - done, _PIECE))
            if not piece:
                return done
            done += len(piece)
        return done

    def _read(self, size: int) -> bytes:
        """Exactly ``size`` bytes (fewer only at end of input), read in pieces."""
        pieces: list[bytes] = []
        done = 0
        while done < size:
            piece = self._raw.read(min(size - done, _PIECE))
            if not piece:
                break
            pieces.append(piece)
            done += len(piece)
        return b"".join(pieces)


def _frame_length(line: bytes) -> int | None:
    """A payload frame's length as Mercurial parses it (``int``), or None for any other line."""
    try:
        return int(line)
    except ValueError:
        return None
