"""One git child process serving one HTTP request: its request body fed in, its answer streamed out.

``git upload-pack --stateless-rpc`` (and ``receive-pack``) read the whole
request from stdin and then answer on stdout. A thread feeds stdin while the
answer is read, so that neither side waits for the other: git may answer
before it has read everything, and a client sends the rest only as fast as it
can. (``git http-backend`` instead holds the request in memory first, up to
``GIT_HTTP_MAX_REQUEST_BUFFER``.)

Usage::

    run = GitRun.start([git, "upload-pack", "--stateless-rpc", str(git_dir)], environment(protocol))
    try:
        run.feed(head, rest)           # rest: the unread part of the body, or None
        first = run.read()
        if not first:
            run.raise_if_request_failed()   # the body was refused or cut off
            ...                              # else run.wait() and run.stderr_tail() say why
        ...                                  # stream first, then run.read() until b""
    finally:
        run.finish()                   # always: stops git if it still runs, closes everything

Nothing here knows which git command runs; :mod:`hostd.git.upload` and the
push path share it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import threading
from typing import IO

from webob import exc

from hostd.git.body import BodyRefused, BoundedBody
from hostd.responses import text_error

#: How much of a request body is copied at a time.
CHUNK = 1 << 16
#: git's stdout pipe is enlarged to this: fewer, larger reads.
PIPE_SIZE = 1 << 20
_STDERR_KEPT = 4096


def environment(protocol: str = "") -> dict[str, str]:
    """What a git child sees: no user or system-wide config of the worker's account, C messages.

    ``protocol`` (an already validated ``Git-Protocol`` header) goes into
    ``GIT_PROTOCOL``, as ``git http-backend`` passes it.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_GLOBAL": "/dev/null", "LANG": "C"}
    if protocol:
        env["GIT_PROTOCOL"] = protocol
    return env


def read_head(body: BoundedBody, size: int) -> bytes:
    """Up to ``size`` bytes of the body, fewer only if it ends (raises ``BodyRefused``)."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        data = body.read(min(CHUNK, size - have))
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def tail(stderr: bytes) -> str:
    """The end of what git printed on stderr, for a log line."""
    return stderr[-_STDERR_KEPT:].decode(errors="replace").strip()


class GitRun:
    """A started git process, its stderr (in a temporary file) and the thread feeding its stdin.

    Two ways to end, chosen at :meth:`start`:

    - impatient (a fetch, the default): git is killed as soon as the request
      body fails or the client goes away, and by :meth:`finish` if it still
      runs; half a request must not get an answer.
    - ``patient`` (a push): git is never killed, since a SIGKILL inside a ref
      update would leave ``.lock`` files. A refused or cut-off body ends
      git's stdin instead (it fails its unpack and removes its quarantine),
      a refused body is then drained so the client can read the report, and
      :meth:`finish` reads git's output to the end and waits for it.
    """

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes], *, patient: bool = False) -> None:
        self.process = process
        self.patient = patient
        self._stderr = stderr
        self._feeder: _Feeder | None = None
        self._done = False

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], *, patient: bool = False) -> GitRun:
        """Start ``argv`` with stdin and stdout as pipes."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
        except BaseException:
            stderr.close()
            raise
        assert process.stdout is not None
        try:
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        return cls(process, stderr, patient=patient)

    def feed(self, head: bytes, rest: BoundedBody | None) -> None:
        """Write ``head`` to git's stdin, then copy ``rest`` as it arrives, from a thread."""
        self._feeder = _Feeder(self.process, head, rest, patient=self.patient)
        self._feeder.start()

    @property
    def refused(self) -> BodyRefused | None:
        """Why the request body was refused while it was copied, if it was."""
        return self._feeder.refused if self._feeder is not None else None

    @property
    def cut_off(self) -> bool:
        """Whether the client went away before the end of its body."""
        return self._feeder is not None and self._feeder.cut_off

    def read(self) -> bytes:
        """Up to a pipe's worth of git's stdout; b"" once it is done (or finished)."""
        assert self.process.stdout is not None
        if self._done:
            return b""
        return os.read(self.process.stdout.fileno(), PIPE_SIZE)

    def raise_if_request_failed(self) -> None:
        """After git printed nothing: raise if that is because the request body failed.

        Raises the :class:`BodyRefused` the body raised, or a 400 if the client
        went away mid-body. The feeder records why before it stops git, so
        once git has exited the reason is known.
        """
        self.process.wait()
        if self.refused is not None:
            raise self.refused
        if self.cut_off:
            raise text_error(exc.HTTPBadRequest, "The request body was cut off.")

    def wait(self) -> int:
        return self.process.wait()

    def stderr_tail(self) -> str:
        """The end of what git printed on stderr ("" once finished)."""
        if self._done:
            return ""
        self._stderr.seek(0)
        return tail(self._stderr.read())

    def finish(self) -> str:
        """End git (see the class) and release everything; returns the end of its stderr.

        The feeder is waited for without a bound: it may be reading the
        request body, which must not go on once the response (and maybe the
        connection's next request) has begun. With git gone it stops after
        its current read.
        """
        if self._done:
            return ""
        try:
            if self.patient:
                while self.read():
                    pass
            elif self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            if self._feeder is not None:
                self._feeder.join()
            message = self.stderr_tail()
        finally:
            self._done = True
            for handle in (self.process.stdout, self.process.stdin, self._stderr):
                if handle is not None:
                    try:
                        handle.close()
                    except OSError:
                        pass
        return message


class _Feeder(threading.Thread):
    """Writes the request to git's stdin: the head read so far, then the rest as it arrives.

    If the body is refused (or the client goes away) while it is copied, the
    reason is recorded here first; then an impatient run's git is killed, so
    that it answers nothing to half a request, and a patient run's git gets
    end-of-file (and a refused body is drained, so the client reads the
    answer). If git stops reading, a patient run drains the body too: the
    client is let finish sending before it gets git's answer.
    """

    def __init__(self, process: subprocess.Popen[bytes], head: bytes, rest: BoundedBody | None, *,
                 patient: bool) -> None:
        super().__init__(name="git-stdin", daemon=True)
        self._process = process
        self._head = head
        self._rest = rest
        self._patient = patient
        self.refused: BodyRefused | None = None
        self.cut_off = False

    def run(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            self._copy(stdin)
        except (ValueError, OSError):
            # git stopped reading: its exit status and stderr say why.
            if self._patient and self._rest is not None:
                self._rest.drain()
        finally:
            try:
                stdin.close()
            except OSError:
                pass
        if self._patient and self._rest is not None and (self.refused is not None or self._rest.refused is not None):
            self._rest.drain()

    def _copy(self, stdin: IO[bytes]) -> None:
        stdin.write(self._head)
        while self._rest is not None:
            try:
                data = self._rest.read(CHUNK)
            except BodyRefused as error:
                self.refused = error
                self._stop()
                return
            except Exception:  # the client is gone (gunicorn raises its own errors)
                self.cut_off = True
                self._stop()
                return
            if not data:
                return
            stdin.write(data)

    def _stop(self) -> None:
        if not self._patient:
            self._process.kill()
