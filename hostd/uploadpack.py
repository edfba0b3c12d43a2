"""git's own upload-pack behind the git pool: clones and fetches served by git.

dulwich's pure-Python object enumeration and pack generation cost 35-200
times git's CPU, and a big clone sends nothing for minutes. Where git is
installed, the fetch side of the protocol is handed to
``git upload-pack --stateless-rpc``, which is what ``git http-backend`` runs
(and GitLab, Gitea, Kallithea and RhodeCode): the request body goes to its
stdin and its stdout is streamed back in large chunks. git sends progress
while it counts and compresses, so a big clone starts sending at once.

What a persistent worker adds over a fork per request is caching, keyed by
the refs' state (see :mod:`hostd.gitrefstate` for when that state is known
to be unchanged):

- the ref advertisement (``info/refs``), and a protocol v2 ``ls-refs``, per
  ref state, in memory: a no-op fetch forks nothing;
- the whole response to a request without ``have`` lines (a full clone),
  on disk (:class:`hostd.gitcache.PackCache`): the next clone of the same
  state is a file sent with ``sendfile``. Its key names the refs by
  content (a digest of their advertisement, read again after git is done),
  so it is right even in the racy second after a push.

Pushes stay with dulwich (``hostd.gitapp``), which owns the ref updates.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from webob import exc

from hostd.gitbody import BoundedBody
from hostd.gitcache import MemoryCache, PackCache, cache_key
from hostd.gitrefstate import PerRefState
from hostd.refadvert import NO_CACHE, respond, service_header
from hostd.responses import text_error

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

_CHUNK = 1 << 16
# A request body is kept in memory up to this size, then spooled to disk.
_SPOOL_IN_MEMORY = 1 << 20
# Only requests this small are parsed to see whether their answer is cacheable.
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

    def __init__(self, git: str, *, adverts: PerRefState | None = None, packs: PackCache | None = None) -> None:
        self.git = git
        self.adverts = adverts or PerRefState()
        self.memory = self.adverts.memory  # ls-refs answers share its budget
        self.packs = packs or PackCache()
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
        protocol = git_protocol(environ)
        spool, digest, size = _spool(body)
        try:
            keep: _Keeper | None = None
            state = b""
            request = _peek(spool, size) if size <= _CLASSIFY_LIMIT else b""
            kind = cache_kind(request)
            if kind is not None:
                # The key names the refs by content, so it holds even while
                # the ref state is racy (then this reads the refs again).
                state = self._state(git_dir)
                key = cache_key(state, protocol.encode(), digest)
                hit = self._cached(environ, start_response, git_dir, key)
                if hit is not None:
                    spool.close()
                    return hit
                keep = _MemoryKeeper(self.memory, key) if kind == LS_REFS else self.packs.writer(git_dir, key)
            started = self._start(git_dir, protocol)
        except BaseException:
            spool.close()
            raise
        return self._stream(start_response, git_dir, started, spool, keep, state)

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
                started: tuple[subprocess.Popen[bytes], IO[bytes]], spool: IO[bytes], keep: _Keeper | None,
                state: bytes) -> Iterable[bytes]:
        process, stderr = started
        feeder = threading.Thread(target=_feed, args=(process, spool), name="upload-pack-stdin", daemon=True)
        feeder.start()
        assert process.stdout is not None
        try:
            first = os.read(process.stdout.fileno(), _PIPE_SIZE)
            if not first:
                returncode = process.wait()
                if returncode != 0:
                    raise _refusal(git_dir, returncode, _tail(_read_all(stderr)))
        except BaseException:
            if keep is not None:
                keep.abort()
            _finish(process, feeder, stderr, spool)
            raise
        start_response("200 OK", _result_headers(None))
        return self._pipe(first, git_dir, process, feeder, stderr, spool, keep, state)

    def _pipe(self, first: bytes, git_dir: Path, process: subprocess.Popen[bytes], feeder: threading.Thread,
              stderr: IO[bytes], spool: IO[bytes], keep: _Keeper | None, state: bytes) -> Iterator[bytes]:
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
            _finish(process, feeder, stderr, spool)


def _spool(body: BoundedBody) -> tuple[IO[bytes], bytes, int]:
    """Read the whole request body into a spooled file: (file, sha256, size)."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the caller
    digest = hashlib.sha256()
    size = 0
    try:
        while True:
            data = body.read(_CHUNK)
            if not data:
                break
            spool.write(data)
            digest.update(data)
            size += len(data)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, digest.digest(), size


def _peek(spool: IO[bytes], size: int) -> bytes:
    data = spool.read(size)
    spool.seek(0)
    return data


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


def _feed(process: subprocess.Popen[bytes], spool: IO[bytes]) -> None:
    """Write the request body to git's stdin (in a thread: git may answer before it has read it all)."""
    assert process.stdin is not None
    try:
        shutil.copyfileobj(spool, process.stdin, _CHUNK)
        process.stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # git stopped reading: its exit status and stderr say why


def _finish(process: subprocess.Popen[bytes], feeder: threading.Thread, stderr: IO[bytes], spool: IO[bytes]) -> None:
    """Stop git if it is still running (the client went away) and release everything."""
    if process.poll() is None:
        process.kill()
    process.wait()
    feeder.join(timeout=10)
    for handle in (process.stdout, process.stdin, stderr, spool):
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
