"""git's own upload-pack behind the git pool: clones and fetches served by git.

dulwich's pure-Python object enumeration and pack generation cost 35-200
times git's CPU, and a big clone sends nothing for minutes. Where git is
installed, the fetch side of the protocol is handed to
``git upload-pack --stateless-rpc``, which is what ``git http-backend`` runs
(and GitLab, Gitea, Kallithea and RhodeCode): the request body goes to its
stdin as it arrives and its stdout is streamed back in large chunks
(:mod:`hostd.git.process`); only the first MiB, what the caches look at, is
read before git starts. git sends progress while it counts and compresses,
so a big clone starts sending at once.

What a persistent worker adds over a fork per request is caching, keyed by
the refs' state (see :mod:`hostd.store.refstate` for when that state is known
to be unchanged):

- the ref advertisement (``info/refs``), and a protocol v2 ``ls-refs``, per
  ref state, in memory: a no-op fetch forks nothing;
- the whole response to a request without ``have`` lines whose wants are
  all advertised tips (a full clone, filtered or not), on disk
  (:class:`hostd.git.cache.PackCache`): the next clone of the same state is
  a file sent with ``sendfile``. Its key names the refs by content (a digest
  of their advertisement, read again after git is done), so it is right even
  in the racy second after a push, and the request body, so a
  ``--filter=blob:none`` clone and a full one never share an entry.

Partial clone (``git clone --filter=...``) is on: see :data:`UPLOAD_PACK_CONFIG`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from webob import exc

from hostd.git.advert import NO_CACHE, respond, service_header
from hostd.git.body import BoundedBody
from hostd.git.cache import Keeper, MemoryKeeper, PackCache, Registered, cache_key
from hostd.git.inflight import InFlight
from hostd.git.process import CHUNK, GitRun, environment, read_head, tail
from hostd.git.wire import FULL_PACK, LS_REFS, advertised_ids, cache_kind, git_protocol, is_v2, wants
from hostd.responses import text_error
from hostd.store.refstate import PerRefState

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

#: ``git -c`` settings of every upload-pack run (advertisement and fetch).
#: Filters (partial clone) are allowed where their cost is bounded by the
#: objects sent: ``blob:none``, ``blob:limit``, ``object:type``, ``tree:0``
#: and their ``combine:``. ``sparse:oid`` (a sparse-checkout pattern set,
#: read from any blob the client names, matched against every path) and
#: deeper ``tree:<n>`` (which may walk a tree again for each depth it is
#: reached at) are refused, in git's words. A partial clone later fetches
#: missing objects by id. Protocol v2 serves any want, whatever the config
#: (gitprotocol-v2: "Wants can be anything"); v0 needs
#: ``allowReachableSHA1InWant``, chosen over ``allowAnySHA1InWant`` because
#: it refuses an unreachable *commit* ("not our ref"). git checks only
#: commits for reachability, so a blob or tree id is served either way: an
#: object force-pushed away stays fetchable by id until it is pruned.
UPLOAD_PACK_CONFIG = (
    "uploadpack.allowFilter=true",
    "uploadpackfilter.allow=false",
    "uploadpackfilter.blob:none.allow=true",
    "uploadpackfilter.blob:limit.allow=true",
    "uploadpackfilter.object:type.allow=true",
    "uploadpackfilter.tree.allow=true",
    "uploadpackfilter.tree.maxDepth=0",
    "uploadpackfilter.combine.allow=true",
    "uploadpack.allowReachableSHA1InWant=true",
)
# Only requests this small are read before git starts, and parsed to see whether
# their answer is cacheable; the rest of a larger one goes to git as it arrives.
_CLASSIFY_LIMIT = 1 << 20
# What git says when the request itself is at fault (the body was cut off, not
# pkt-lines, not the protocol, or a filter spec it cannot parse); anything else
# is the server's fault.
_CLIENT_ERROR = re.compile(r"protocol error|hung up|expected|invalid|unknown|bad ")


class UploadPack:
    """Serve ``info/refs?service=git-upload-pack`` and ``git-upload-pack`` with git."""

    def __init__(self, git: str, *, adverts: PerRefState | None = None, packs: PackCache | None = None,
                 inflight: InFlight | None = None) -> None:
        self.git = git
        self.adverts = adverts or PerRefState()
        self.memory = self.adverts.memory  # ls-refs answers share its budget
        self.packs = packs or PackCache()
        self.inflight = inflight
        self._tips = _Tips()

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
                log.error("git upload-pack --advertise-refs failed in %s: %s", git_dir, tail(result.stderr))
                raise text_error(exc.HTTPInternalServerError, "The repository could not be read.")
            return result.stdout

        return self.adverts.get(git_dir, f"upload-pack {protocol}", advertise)

    def _state(self, git_dir: Path) -> bytes:
        """The refs' content, as a digest of their advertisement: the same on every worker and host."""
        return hashlib.sha256(self.advertisement(git_dir)).digest()

    def _argv(self, git_dir: Path, *args: str) -> list[str]:
        config = [item for setting in UPLOAD_PACK_CONFIG for item in ("-c", setting)]
        return [self.git, *config, "upload-pack", "--stateless-rpc", *args, str(git_dir)]

    def _run(self, git_dir: Path, protocol: str, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self._argv(git_dir, *args), input=stdin, capture_output=True,
                              env=environment(protocol), timeout=600, check=False)

    def _start(self, git_dir: Path, protocol: str) -> GitRun:
        return GitRun.start(self._argv(git_dir), environment(protocol))

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
        head = read_head(body, _CLASSIFY_LIMIT + 1)
        ended = len(head) <= _CLASSIFY_LIMIT
        keep: Keeper | None = None
        state = b""
        kind = cache_kind(head) if ended else None
        if kind is not None:
            # The key names the refs by content, so it holds even while
            # the ref state is racy (then this reads the refs again).
            advertisement = self.advertisement(git_dir)
            state = hashlib.sha256(advertisement).digest()
            kind = self._worth_keeping(kind, head, state, advertisement)
        if kind is not None:
            key = cache_key(state, protocol.encode(), hashlib.sha256(head).digest())
            hit = self._cached(environ, start_response, git_dir, key)
            if hit is not None:
                return hit
            keep = MemoryKeeper(self.memory, key) if kind == LS_REFS else self._pack_writer(git_dir, key)
        try:
            run = self._start(git_dir, protocol)
        except BaseException:
            if keep is not None:
                keep.abort()
            raise
        return self._stream(start_response, git_dir, run, head, None if ended else body, keep, state)

    def _worth_keeping(self, kind: str, head: bytes, state: bytes, advertisement: bytes) -> str | None:
        """``kind``, unless it is a pack and one of its wants is not an advertised tip: then None.

        A partial clone fetches the objects it lacks by id, without haves
        (``git checkout``, ``git log -p``): each such answer is particular
        to one client and one moment, and caching it would evict the clones.
        """
        if kind == FULL_PACK and not wants(head) <= self._tips.of(state, advertisement):
            return None
        return kind

    def _pack_writer(self, git_dir: Path, key: str) -> Keeper | None:
        """A copy of a clone for the pack cache, registered in flight while its temporary file exists."""
        ticket = self.inflight.begin(git_dir) if self.inflight is not None else None
        writer = self.packs.writer(git_dir, key)
        if ticket is None:
            return writer
        if writer is None:
            ticket.end()
            return None
        return Registered(writer, ticket)

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
            return wrapper(handle, CHUNK)  # type: ignore[no-any-return]
        return _read_file(handle)

    def _stream(self, start_response: StartResponse, git_dir: Path, run: GitRun, head: bytes,
                rest: BoundedBody | None, keep: Keeper | None, state: bytes) -> Iterable[bytes]:
        """Feed git the request; start the response once it has said something (or refuse)."""
        try:
            run.feed(head, rest)
            first = run.read()
            if not first:
                run.raise_if_request_failed()
                returncode = run.wait()
                if returncode != 0:
                    raise _refusal(git_dir, returncode, run.stderr_tail())
        except BaseException:
            if keep is not None:
                keep.abort()
            run.finish()
            raise
        start_response("200 OK", _result_headers(None))
        return self._pipe(first, git_dir, run, keep, state)

    def _pipe(self, first: bytes, git_dir: Path, run: GitRun, keep: Keeper | None, state: bytes) -> Iterator[bytes]:
        """Stream git's output; keep a copy if the answer is cacheable and the refs did not move meanwhile."""
        kept = False
        try:
            data = first
            while data:
                if keep is not None:
                    keep.write(data)
                yield data
                data = run.read()
            returncode = run.wait()
            if returncode != 0:
                log.warning("git upload-pack exited %d in %s: %s", returncode, git_dir, run.stderr_tail())
            elif keep is not None and self._state(git_dir) == state:
                keep.commit()
                kept = True
        finally:
            if keep is not None and not kept:
                keep.abort()
            run.finish()


class _Tips:
    """The object ids of recent ref advertisements, by digest: a 20,000-ref one takes 70 ms to parse."""

    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._known: OrderedDict[bytes, frozenset[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, digest: bytes, advertisement: bytes) -> frozenset[bytes]:
        """The ids ``advertisement`` names; ``digest`` is its SHA-256."""
        with self._lock:
            tips = self._known.get(digest)
            if tips is not None:
                self._known.move_to_end(digest)
                return tips
        tips = advertised_ids(advertisement)
        with self._lock:
            self._known[digest] = tips
            while len(self._known) > self._keep:
                self._known.popitem(last=False)
        return tips


def _result_headers(length: int | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/x-git-upload-pack-result"), *NO_CACHE]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


def _read_file(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while data := handle.read(CHUNK):
            yield data


def _refusal(git_dir: Path, returncode: int, message: str) -> exc.HTTPException:
    """The answer when git refused the request before writing anything."""
    log.warning("git upload-pack exited %d without output in %s: %s", returncode, git_dir, message)
    if _CLIENT_ERROR.search(message):
        return text_error(exc.HTTPBadRequest, "The upload-pack request was not understood.")
    return text_error(exc.HTTPInternalServerError, "git upload-pack failed.")
