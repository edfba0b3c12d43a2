"""git's own upload-pack behind the git pool: clones and fetches served by git.

dulwich's pure-Python object enumeration and pack generation cost 35-200
times git's CPU, and a big clone sends nothing for minutes. Where git is
installed, the fetch side of the protocol is handed to
``git upload-pack --stateless-rpc``, which is what ``git http-backend`` runs
(and GitLab, Gitea, Kallithea and RhodeCode): the request body goes to its
stdin as it arrives and its stdout is streamed back in large chunks.
(http-backend holds the whole request in memory first, up to
``GIT_HTTP_MAX_REQUEST_BUFFER``, so that git never blocks writing an answer
nobody reads yet; here a thread feeds stdin while the answer is read, and
only the first MiB, what the caches look at, is read before git starts.) git sends progress
while it counts and compresses, so a big clone starts sending at once.

What a persistent worker adds over a fork per request is caching, keyed by
the refs' state (see :mod:`hostd.git.refstate` for when that state is known
to be unchanged):

- the ref advertisement (``info/refs``), and a protocol v2 ``ls-refs``, per
  ref state, in memory: a no-op fetch forks nothing;
- the whole response to a request without ``have`` lines (a full clone),
  on disk (:class:`hostd.git.cache.PackCache`): the next clone of the same
  state is a file sent with ``sendfile``. Its key names the refs by
  content (a digest of their advertisement, read again after git is done),
  so it is right even in the racy second after a push.

Pushes stay with dulwich (``hostd.git.app``), which owns the ref updates.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from webob import exc

from hostd.git.advert import NO_CACHE, respond, service_header
from hostd.git.body import BodyRefused, BoundedBody
from hostd.git.cache import MemoryCache, PackCache, cache_key
from hostd.git.inflight import InFlight, Ticket
from hostd.git.refstate import PerRefState
from hostd.responses import text_error

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

_CHUNK = 1 << 16
# Only requests this small are read before git starts, and parsed to see whether
# their answer is cacheable; the rest of a larger one goes to git as it arrives.
_CLASSIFY_LIMIT = 1 << 20
# The Git-Protocol header goes into git's environment, as http-backend does;
# git reads only ``key[=value]`` items from it, so only their characters pass.
_PROTOCOL = re.compile(rb"\A[A-Za-z0-9=:._-]{1,256}\Z")
_STDERR_KEPT = 4096
_HEX4 = re.compile(rb"\A[0-9a-f]{4}\Z")
# What git says when the request itself is at fault (the body was cut off,
# not pkt-lines, or not the protocol); anything else is the server's fault.
_CLIENT_ERROR = re.compile(r"protocol error|hung up|expected|invalid|unknown|bad ")
_PIPE_SIZE = 1 << 20


def git_protocol(environ: WSGIEnviron) -> str:
    """The client's ``Git-Protocol`` header if well-formed, else "" (protocol v0)."""
    value = environ.get("HTTP_GIT_PROTOCOL", "")
    return value if _PROTOCOL.match(value.encode("latin-1", "replace")) else ""


def is_v2(protocol: str) -> bool:
    return "version=2" in protocol.split(":")


def pkt_lines(data: bytes) -> Iterator[bytes | None]:
    """The pkt-lines of ``data``; None for flush/delim/response-end. ValueError if malformed."""
    position = 0
    while position < len(data):
        header = data[position:position + 4]
        if not _HEX4.match(header):
            raise ValueError(f"bad pkt-line length {header!r}")
        size = int(header, 16)
        if size < 4:
            position += 4
            yield None
            continue
        if position + size > len(data):
            raise ValueError("truncated pkt-line")
        yield data[position + 4:position + size]
        position += size


#: What :func:`cache_kind` says of a cacheable request: kept in memory, or on disk.
LS_REFS, FULL_PACK = "ls-refs", "full pack"


def cache_kind(body: bytes) -> str | None:
    """Whether the answer to this upload-pack request is worth caching, and as what.

    A v2 ``ls-refs`` (every no-op fetch sends one; a small answer, kept in
    memory), and a request without ``have`` lines (a full clone: every
    client of one ref state asks the same; a pack, kept on disk).  Requests
    with haves are particular to one client's history: None.
    """
    try:
        lines = [line for line in pkt_lines(body) if line is not None]
    except ValueError:
        return None
    if not lines:
        return None
    if lines[0].rstrip(b"\n") == b"command=ls-refs":
        return LS_REFS
    if lines[0].startswith(b"command=") and not lines[0].startswith(b"command=fetch"):
        return None
    wants = any(line.startswith(b"want ") for line in lines)
    return FULL_PACK if wants and not any(line.startswith(b"have ") for line in lines) else None


class UploadPack:
    """Serve ``info/refs?service=git-upload-pack`` and ``git-upload-pack`` with git."""

    def __init__(self, git: str, *, adverts: PerRefState | None = None, packs: PackCache | None = None,
                 inflight: InFlight | None = None) -> None:
        self.git = git
        self.adverts = adverts or PerRefState()
        self.memory = self.adverts.memory  # ls-refs answers share its budget
        self.packs = packs or PackCache()
        self.inflight = inflight
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "LANG": "C",
        }

    # -- info/refs ---------------------------------------------------------

    def info_refs(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path) -> Iterable[bytes]:
        protocol = git_protocol(environ)
        advertisement = self.advertisement(git_dir, protocol)
        if not is_v2(protocol):
            # As http-backend: v0/v1 answers name the service first, v2 does not.
            advertisement = service_header("git-upload-pack") + advertisement
        return respond(environ, start_response, "git-upload-pack", advertisement)

    def advertisement(self, git_dir: Path, protocol: str = "") -> bytes:
        """What ``git upload-pack --advertise-refs`` prints, computed once per ref state."""
        def advertise() -> bytes:
            result = self._run(git_dir, protocol, ["--advertise-refs"], b"")
            if result.returncode != 0:
                log.error("git upload-pack --advertise-refs failed in %s: %s", git_dir, _tail(result.stderr))
                raise text_error(exc.HTTPInternalServerError, "The repository could not be read.")
            return result.stdout

        return self.adverts.get(git_dir, f"upload-pack {protocol}", advertise)

    def _state(self, git_dir: Path) -> bytes:
        """The refs' content, as a digest of their advertisement: the same on every worker and host."""
        return hashlib.sha256(self.advertisement(git_dir)).digest()

    def _run(self, git_dir: Path, protocol: str, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [self.git, "upload-pack", "--stateless-rpc", *args, str(git_dir)],
            input=stdin, capture_output=True, env=self._environment(protocol), timeout=600, check=False,
        )

    def _environment(self, protocol: str) -> dict[str, str]:
        return dict(self._env, GIT_PROTOCOL=protocol) if protocol else self._env

    # -- git-upload-pack -----------------------------------------------------

    def upload_pack(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path,
                    body: BoundedBody) -> Iterable[bytes]:
        """Answer one upload-pack request; its body goes to git as it arrives.

        Only the first ``_CLASSIFY_LIMIT`` bytes are read before git starts
        (a request that ends within them may be answered from a cache); the
        rest is copied to git's stdin while it is received, never stored. A
        body refused while it is read (over a limit, a compression bomb,
        corrupt gzip) raises :class:`hostd.git.body.BodyRefused`: before git
        starts if it happens within the head, else once git is stopped,
        which is before it answers (it reads its whole request first).
        """
        protocol = git_protocol(environ)
        head = _read_head(body, _CLASSIFY_LIMIT + 1)
        ended = len(head) <= _CLASSIFY_LIMIT
        keep: _Keeper | None = None
        state = b""
        kind = cache_kind(head) if ended else None
        if kind is not None:
            # The key names the refs by content, so it holds even while
            # the ref state is racy (then this reads the refs again).
            state = self._state(git_dir)
            key = cache_key(state, protocol.encode(), hashlib.sha256(head).digest())
            hit = self._cached(environ, start_response, git_dir, key)
            if hit is not None:
                return hit
            keep = _MemoryKeeper(self.memory, key) if kind == LS_REFS else self._pack_writer(git_dir, key)
        try:
            started = self._start(git_dir, protocol)
        except BaseException:
            if keep is not None:
                keep.abort()
            raise
        return self._stream(start_response, git_dir, started, _Feeder(started[0], head, None if ended else body),
                            keep, state)

    def _pack_writer(self, git_dir: Path, key: str) -> _Keeper | None:
        """A copy of a clone for the pack cache, registered in flight while its temporary file exists."""
        ticket = self.inflight.begin(git_dir) if self.inflight is not None else None
        writer = self.packs.writer(git_dir, key)
        if ticket is None:
            return writer
        if writer is None:
            ticket.end()
            return None
        return _Registered(writer, ticket)

    def _cached(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path,
                key: str) -> Iterable[bytes] | None:
        small = self.memory.get(key)
        if small is not None:
            start_response("200 OK", _result_headers(len(small)))
            return [small]
        handle = self.packs.open(git_dir, key)
        if handle is None:
            return None
        start_response("200 OK", _result_headers(os.fstat(handle.fileno()).st_size))
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(handle, _CHUNK)  # type: ignore[no-any-return]
        return _read_file(handle)

    def _start(self, git_dir: Path, protocol: str) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed by _stream
        try:
            process = subprocess.Popen(
                [self.git, "upload-pack", "--stateless-rpc", str(git_dir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=self._environment(protocol),
            )
        except BaseException:
            stderr.close()
            raise
        assert process.stdout is not None
        try:
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # fewer, larger reads
        except OSError:
            pass
        return process, stderr

    def _stream(self, start_response: StartResponse, git_dir: Path,
                started: tuple[subprocess.Popen[bytes], IO[bytes]], feeder: _Feeder, keep: _Keeper | None,
                state: bytes) -> Iterable[bytes]:
        process, stderr = started
        feeder.start()
        assert process.stdout is not None
        try:
            first = os.read(process.stdout.fileno(), _PIPE_SIZE)
            if not first:
                returncode = process.wait()
                # The feeder records why it stopped git before it stops it.
                if feeder.refused is not None:
                    raise feeder.refused
                if feeder.cut_off:
                    raise text_error(exc.HTTPBadRequest, "The upload-pack request body was cut off.")
                if returncode != 0:
                    raise _refusal(git_dir, returncode, _tail(_read_all(stderr)))
        except BaseException:
            if keep is not None:
                keep.abort()
            _finish(process, feeder, stderr)
            raise
        start_response("200 OK", _result_headers(None))
        return self._pipe(first, git_dir, process, feeder, stderr, keep, state)

    def _pipe(self, first: bytes, git_dir: Path, process: subprocess.Popen[bytes], feeder: _Feeder,
              stderr: IO[bytes], keep: _Keeper | None, state: bytes) -> Iterator[bytes]:
        """Stream git's output; keep a copy if the answer is cacheable and the refs did not move meanwhile."""
        assert process.stdout is not None
        stdout = process.stdout.fileno()
        kept = False
        try:
            data = first
            while data:
                if keep is not None:
                    keep.write(data)
                yield data
                data = os.read(stdout, _PIPE_SIZE)
            returncode = process.wait()
            if returncode != 0:
                log.warning("git upload-pack exited %d in %s: %s", returncode, git_dir, _tail(_read_all(stderr)))
            elif keep is not None and self._state(git_dir) == state:
                keep.commit()
                kept = True
        finally:
            if keep is not None and not kept:
                keep.abort()
            _finish(process, feeder, stderr)


def _read_head(body: BoundedBody, size: int) -> bytes:
    """Up to ``size`` bytes of the body, fewer only if it ends (raises ``BodyRefused``)."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        data = body.read(min(_CHUNK, size - have))
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _result_headers(length: int | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/x-git-upload-pack-result"), *NO_CACHE]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


def _read_file(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while data := handle.read(_CHUNK):
            yield data


def _tail(stderr: bytes) -> str:
    return stderr[-_STDERR_KEPT:].decode(errors="replace").strip()


class _Keeper(Protocol):
    """Where a response being sent is also kept, if it completes."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class _Registered:
    """A keeper whose write is registered in flight (:mod:`hostd.git.inflight`) until it commits or aborts."""

    def __init__(self, keeper: _Keeper, ticket: Ticket) -> None:
        self._keeper = keeper
        self._ticket = ticket

    def write(self, data: bytes) -> None:
        self._keeper.write(data)

    def commit(self) -> None:
        try:
            self._keeper.commit()
        finally:
            self._ticket.end()

    def abort(self) -> None:
        try:
            self._keeper.abort()
        finally:
            self._ticket.end()


class _MemoryKeeper:
    """Collects a small response (an ``ls-refs``) for the memory cache."""

    def __init__(self, cache: MemoryCache, key: str) -> None:
        self._cache = cache
        self._key = key
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size <= self._cache.largest:
            self._parts.append(data)

    def commit(self) -> None:
        if self._size <= self._cache.largest:
            self._cache.put(self._key, b"".join(self._parts))

    def abort(self) -> None:
        self._parts.clear()


class _Feeder(threading.Thread):
    """Writes the request to git's stdin: the head read so far, then the rest as it arrives.

    In a thread: git may answer before it has read it all, and a client
    sends the rest only as fast as it can. If the body is refused (or the
    client goes away) while it is copied, git is stopped, after the reason
    is recorded here, so that it answers nothing to half a request.
    """

    def __init__(self, process: subprocess.Popen[bytes], head: bytes, rest: BoundedBody | None) -> None:
        super().__init__(name="upload-pack-stdin", daemon=True)
        self._process = process
        self._head = head
        self._rest = rest
        self.refused: BodyRefused | None = None
        self.cut_off = False

    def run(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(self._head)
            while self._rest is not None:
                try:
                    data = self._rest.read(_CHUNK)
                except BodyRefused as error:
                    self.refused = error
                    self._process.kill()
                    return
                except Exception:  # the client is gone (gunicorn raises its own errors)
                    self.cut_off = True
                    self._process.kill()
                    return
                if not data:
                    break
                stdin.write(data)
            stdin.close()
        except (ValueError, OSError):
            pass  # git stopped reading: its exit status and stderr say why


def _finish(process: subprocess.Popen[bytes], feeder: _Feeder, stderr: IO[bytes]) -> None:
    """Stop git if it is still running (the client went away) and release everything.

    The feeder is waited for without a bound: it may be reading the request
    body, which must not go on once the response (and maybe the connection's
    next request) has begun. With git gone it stops after its current read.
    """
    if process.poll() is None:
        process.kill()
    process.wait()
    feeder.join()
    for handle in (process.stdout, process.stdin, stderr):
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


def _read_all(stderr: IO[bytes]) -> bytes:
    stderr.seek(0)
    return stderr.read()


def _refusal(git_dir: Path, returncode: int, message: str) -> exc.HTTPException:
    """The answer when git refused the request before writing anything."""
    log.warning("git upload-pack exited %d without output in %s: %s", returncode, git_dir, message)
    if _CLIENT_ERROR.search(message):
        return text_error(exc.HTTPBadRequest, "The upload-pack request was not understood.")
    return text_error(exc.HTTPInternalServerError, "git upload-pack failed.")
