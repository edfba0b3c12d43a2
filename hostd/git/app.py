"""The git pool's application: git smart HTTP, and nothing else.

singlemalt has already decided who may do what before a request gets here;
this app maps the URL to a repository on disk and lets dulwich speak the
protocol, except for clones and fetches when an ``upload_pack`` is given:
those go to git's own upload-pack (:mod:`hostd.git.upload`; the composition
root gives one wherever git is installed, ``HOSTD_GIT_PACK``). Only the
smart protocol is served: the dumb-protocol paths and
``git-upload-archive`` are refused with a message, never passed through.

Two dulwich handlers are replaced to behave like git's own when a push races
another request for the same ref: ``_ReceivePack`` (a push that loses is told
so) and ``_UploadPack`` (a fetch that asks for a tip that just moved is served).
The ref advertisement a push starts with is dulwich's, byte for byte, but its
refs are read once instead of twice and the answer is kept per ref state
(:mod:`hostd.git.advert`), on both pack paths.

Request bodies are limited to ``max_request_bytes`` (``HOSTD_MAX_PUSH_BYTES``),
measured here because only the worker sees a chunked body's length (git sends
every push over ``http.postBuffer``, 1 MiB, chunked, and HTTP/2 bodies have no
length at all). A push over the limit is not stored (not at all if its
``Content-Length`` says so), and the client is told why in receive-pack's own
report (``unpack <reason>``), which git prints as ``error: remote unpack
failed: <reason>``. git shows a 413 only as "RPC failed; HTTP 413", followed
by "Everything up-to-date", so pushes never get one; fetch requests over the
limit do. Before the report the rest of the body is read and dropped, up to
twice the limit in all: git reads the answer only once it has sent its whole
pack, and meets a closed connection otherwise ("Send failure: Broken pipe").
Nothing is read after a response has been sent. A failed push leaves no
temporary pack behind, and neither does a push whose worker is killed: each
push is registered in ``inflight`` (:mod:`hostd.git.inflight`), and its temporary
pack is removed as soon as the worker's death is seen.

A request body with a ``Content-Encoding`` other than gzip is refused (415);
a gzip body is bounded in how far it inflates (:mod:`hostd.git.body`).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import gc
import logging
import os
import re
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.object_store import BaseObjectStore, MissingObjectFinder
from dulwich.objects import Commit, ObjectID, Tag, valid_hexsha
from dulwich.pack import Pack
from dulwich.protocol import CAPABILITY_ATOMIC, Protocol, pkt_line
from dulwich.refs import Ref, RefsContainer, SymrefLoop, check_ref_format
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import Backend, BackendRepo, ReceivePackHandler, UploadPackHandler
from dulwich.web import HTTPGitApplication
from webob import exc

from hostd.git.advert import receive_pack_advertisement, respond, service_header
from hostd.git.body import (
    COMPRESSED_REQUEST_LIMIT,
    BodyRefused,
    BoundedBody,
    content_coding,
    content_length,
    mib,
    prepare_body,
)
from hostd.git.inflight import InFlight
from hostd.git.refstate import PerRefState
from hostd.git.upload import UploadPack
from hostd.responses import text_error
from hostd.store.accounts import Repo
from hostd.store.pushlog import PushLog
from hostd.store.storage import Storage, StorageError

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

# The repository part is everything before the endpoint; names are validated
# by the resolver, so this regex only has to find the endpoint.
_SMART = re.compile(r"\A/(?P<repo>.+?)(?P<endpoint>/info/refs|/git-upload-pack|/git-receive-pack)\Z")
_DUMB = re.compile(
    r"/(HEAD|objects/info/(packs|alternates|http-alternates)|objects/[0-9a-f]{2}/[0-9a-f]{38}"
    r"|objects/pack/[^/]+\.(pack|idx))\Z"
)
_SERVICES = frozenset({"git-upload-pack", "git-receive-pack"})

# git's own receive-pack words for a ref it could not move (the client prints
# them as "! [remote rejected] main -> main (failed to update ref)").
_FAILED = b"failed to update ref"
_ATOMIC_FAILED = b"atomic transaction failed"
# Ref updates take milliseconds; a push waits this long for another's to finish.
_REF_LOCK_SECONDS = 10.0
# How many commits back from the tips a fetch looks for a want that is no
# longer a tip (see _UploadPack), and how many want lines it reads ahead to
# find them (dulwich checks any further ones alone, against the tips only).
_REACH_COMMITS = 10_000
_PEEK_WANTS = 10_000
# A push at least this large is followed by _release_memory().
_COLLECT_AFTER_BYTES = 8 << 20
# glibc's malloc_trim(pad); None where the C library has none (musl, macOS).
_MALLOC_TRIM: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
# git's receive-pack word for every ref of a push whose pack was not stored.
_UNPACKER_ERROR = b"unpacker error"


class _Repository(DulwichRepo):
    """A repository whose upload-pack may also grant wants that are not tips.

    ``reachable_wants`` is set per request (a backend opens a new instance for
    each) by ``_UploadPack``, after it has checked them.
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reachable_wants: frozenset[ObjectID] = frozenset()

    def find_missing_objects(
        self,
        determine_wants: Callable[[Mapping[Ref, ObjectID], int | None], list[ObjectID]],
        *args: Any,
        **kwargs: Any,
    ) -> MissingObjectFinder | None:
        def with_reachable(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            # Only the validation of want lines sees these names: in a
            # stateless request dulwich advertises nothing from ``refs``.
            extra = {Ref(b"refs/hostd/reachable/" + sha): sha for sha in self.reachable_wants}
            return determine_wants({**refs, **extra}, depth)

        return super().find_missing_objects(with_reachable, *args, **kwargs)


PushRecorder = Callable[[list[tuple[str, str, str]]], None]


class _OneRepository(Backend):
    """A dulwich backend that serves the single repository already resolved.

    One is made per request, so it also carries that request's push recorder
    (the repository and pusher are already bound into it) and its body, and
    closes what it opened when the response is done: dulwich never closes
    a repository, whose packs then stay mapped (and their files open) until
    the garbage collector finds them, a pack's size of memory per request.
    """

    def __init__(self, path: Path, on_push: PushRecorder | None = None, body: BoundedBody | None = None) -> None:
        self.path = path
        self.on_push = on_push
        self.body = body
        self._opened: list[_Repository] = []

    def open_repository(self, path: str) -> BackendRepo:
        try:
            repo = _Repository(str(self.path))
        except NotGitRepository:
            raise
        except OSError as error:
            raise NotGitRepository(str(error)) from error
        self._opened.append(repo)
        return repo

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()


class GitApp:
    """Serve git smart HTTP for repositories a resolver finds."""

    def __init__(
        self,
        resolve: Callable[[str], Repo | None],
        storage: Storage,
        *,
        max_request_bytes: int,
        pushlog: PushLog | None = None,
        upload_pack: UploadPack | None = None,
        inflight: InFlight | None = None,
    ) -> None:
        self.resolve = resolve
        self.storage = storage
        self.max_request_bytes = max_request_bytes
        self.pushlog = pushlog
        self.upload_pack = upload_pack
        self.inflight = inflight
        self.adverts = upload_pack.adverts if upload_pack is not None else PerRefState()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._serve(environ, start_response)
        except exc.HTTPException as error:
            return error(environ, start_response)  # type: ignore[no-any-return]

    def _serve(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        match = _SMART.match(path)
        if match is None:
            if _DUMB.search(path):
                raise text_error(exc.HTTPForbidden, "The dumb HTTP protocol is not supported; use git 1.6.6 or later.")
            if path.endswith("/git-upload-archive"):
                raise text_error(exc.HTTPForbidden, "git archive --remote is not supported over HTTP.")
            raise text_error(exc.HTTPNotFound, "Not a git smart HTTP URL.")
        endpoint = match["endpoint"]
        method = environ.get("REQUEST_METHOD", "GET")
        service = ""
        if endpoint == "/info/refs":
            if method not in ("GET", "HEAD"):
                raise text_error(exc.HTTPMethodNotAllowed, "info/refs takes GET.")
            query = environ.get("QUERY_STRING", "")
            service = query[len("service="):] if query.startswith("service=") else ""
            if service not in _SERVICES or "&" in query:
                raise text_error(
                    exc.HTTPForbidden,
                    "The dumb HTTP protocol is not supported; use git 1.6.6 or later.",
                )
        elif method != "POST":
            raise text_error(exc.HTTPMethodNotAllowed, f"{endpoint[1:]} takes POST.")
        elif environ.get("CONTENT_TYPE") != (expected := f"application/x-{endpoint[1:]}-request"):
            # As git http-backend: not a CORS-safe type, so a browser must preflight a cross-origin POST.
            raise text_error(exc.HTTPForbidden, f"{endpoint[1:]} takes Content-Type {expected}.")
        repo = self.resolve(match["repo"])
        if repo is None:
            raise text_error(exc.HTTPNotFound, "Repository not found.")
        push = endpoint == "/git-receive-pack"
        limit = self.max_request_bytes
        too_large = f"{'push' if push else 'request'} is larger than the server's limit of {mib(limit)}"
        announced = content_length(environ) if method == "POST" else 0
        if announced > limit and not push:
            raise text_error(exc.HTTPRequestEntityTooLarge, too_large + ".")
        coding = content_coding(environ) if method == "POST" else ""
        if coding is None:
            # Fail closed: a body git cannot read must not reach it as garbage.
            raise text_error(exc.HTTPUnsupportedMediaType,
                             "Only gzip Content-Encoding is supported (git sends gzip or nothing).")
        if coding and not push and limit > COMPRESSED_REQUEST_LIMIT:
            limit = COMPRESSED_REQUEST_LIMIT
            too_large = f"gzip-compressed request inflates past the server's limit of {mib(limit)}"
        inner = dict(environ, PATH_INFO=endpoint)
        wire = inner["wsgi.input"]
        body = BoundedBody(prepare_body(inner, coding), limit, too_large, refuse_pack=announced > limit, source=wire)
        inner["wsgi.input"] = body
        try:
            git_dir = self.storage.path(repo.ref, "git")
        except StorageError:
            raise text_error(exc.HTTPNotFound, "Repository not found.") from None
        if service == "git-receive-pack":
            return self._receive_pack_refs(environ, start_response, git_dir)
        if self.upload_pack is not None and not push:
            return self._native(inner, start_response, git_dir, body)
        backend = _OneRepository(git_dir, self._recorder(repo, environ), body)
        git = HTTPGitApplication(
            backend, handlers={b"git-upload-pack": _UploadPack, b"git-receive-pack": _ReceivePack}
        )
        response = _DeferredStart(start_response)
        # Registered before dulwich creates its temporary pack, ended after it is renamed or removed.
        ticket = self.inflight.begin(git_dir) if push and self.inflight is not None else None

        def finish() -> None:
            try:
                backend.close()
            finally:
                if ticket is not None:
                    ticket.end()
            if push and body.received >= _COLLECT_AFTER_BYTES:
                _release_memory()

        try:
            app_iter = git(inner, response.start_response)
        except BaseException:
            finish()
            raise
        return _served(app_iter, environ, response, body, finish)

    def _receive_pack_refs(self, environ: WSGIEnviron, start_response: StartResponse,
                           git_dir: Path) -> Iterable[bytes]:
        """The ref advertisement a push starts with, built once per ref state (see ``hostd.git.advert``)."""
        def advertise() -> bytes:
            backend = _OneRepository(git_dir)
            out = BytesIO()
            try:
                _ReceivePack(backend, [str(git_dir)], Protocol(BytesIO().read, out.write),
                             stateless_rpc=True, advertise_refs=True).handle()
            except NotGitRepository:
                raise text_error(exc.HTTPNotFound, "Repository not found.") from None
            finally:
                backend.close()
            return out.getvalue()

        body = service_header("git-receive-pack") + self.adverts.get(git_dir, "receive-pack", advertise)
        return respond(environ, start_response, "git-receive-pack", body)

    def _native(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path,
                body: BoundedBody) -> Iterable[bytes]:
        """Fetch and clone served by git's own upload-pack (see ``hostd.git.upload``)."""
        assert self.upload_pack is not None
        if environ["PATH_INFO"] == "/info/refs":
            return self.upload_pack.info_refs(environ, start_response, git_dir)
        try:
            return self.upload_pack.upload_pack(environ, start_response, git_dir, body)
        except BodyRefused as error:
            log.info("refused an upload-pack request body: %s", error.reason)
            raise _body_refusal(error) from None

    def _recorder(self, repo: Repo, environ: WSGIEnviron) -> PushRecorder | None:
        pushlog = self.pushlog
        if pushlog is None:
            return None
        user = environ.get("REMOTE_USER", "")

        def record(updates: list[tuple[str, str, str]]) -> None:
            try:
                pushlog.record(repo.ref, user, updates)
            except Exception:
                # The refs have moved and the client is being told so; losing
                # the log line must not turn a landed push into an error.
                log.exception("push log: could not record %s for %s: %s", repo.ref, user, updates)

        return record


class _DeferredStart:
    """A ``start_response`` that reaches the server only with the first byte.

    dulwich starts its 200 before it reads the request; until it has written
    something, an error found in the request can still have its own status.
    """

    def __init__(self, start_response: StartResponse) -> None:
        self.server_start_response = start_response
        self._pending: tuple[str, list[tuple[str, str]]] | None = None
        self._write: Callable[[bytes], object] | None = None

    @property
    def started(self) -> bool:
        return self._write is not None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        if exc_info is not None and self._write is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        self._pending = (status, list(headers))
        return self.write

    def commit(self) -> None:
        """Send the status and headers dulwich chose, if not yet sent."""
        if self._write is None and self._pending is not None:
            self._write = self.server_start_response(*self._pending)

    def write(self, data: bytes) -> object:
        self.commit()
        assert self._write is not None
        return self._write(data)


def _served(app_iter: Iterable[bytes], environ: WSGIEnviron, response: _DeferredStart, body: BoundedBody,
            close: Callable[[], None]) -> Iterator[bytes]:
    """Pass dulwich's response through, then ``close`` the request's repositories.

    If the body went over the limit before any of the response was sent, the
    answer is a 413 with the reason instead.
    """
    try:
        for chunk in app_iter:
            response.commit()
            yield chunk
        response.commit()
    except Exception:
        # dulwich wraps the error it got from reading (a GitProtocolError for
        # a pkt-line), so the body is asked, not the exception.
        if body.refused is None or response.started:
            raise
        log.info("refused a request body: %s", body.refused.reason)
        yield from _body_refusal(body.refused)(environ, response.server_start_response)
    finally:
        try:
            close_iter = getattr(app_iter, "close", None)
            if close_iter is not None:
                close_iter()
        finally:
            close()


def _body_refusal(error: BodyRefused) -> exc.HTTPException:
    """The HTTP answer to a body refused while it was read: 413 (too large, a bomb) or 400 (corrupt)."""
    status = exc.HTTPRequestEntityTooLarge if error.status == 413 else exc.HTTPBadRequest
    return text_error(status, error.reason + ".")


# (ref name or b"unpack", b"ok" or the reason it failed), as dulwich reports them
_Statuses = Generator[tuple[bytes, bytes], None, None]


class _RefLockTimeout(Exception):
    """Another push held the repository's ref lock for too long."""


class _ReceivePack(ReceivePackHandler):
    """dulwich's receive-pack, with ref updates that cannot be lost in a race.

    dulwich 1.2 answers ``ok`` for a ref whose compare-and-swap failed (the
    branch moved after the client read it), so the loser of a race was told
    its push had landed while its commit was dropped; two updates of one ref
    at once made the second fail its ``.lock`` and end the response with a
    500; and ``--atomic`` moved refs one at a time. Here the new pack is
    received as before, then every old value is checked and the refs moved
    under one per-repository lock, and failures get git's own wording.

    A pack that is not stored (over the size limit, corrupt, cut off) is
    reported like git's: ``unpack <reason>`` and ``unpacker error`` for every
    ref, after the rest of the body has been read (see ``BoundedBody``).
    """

    def handle(self) -> None:
        if not self.advertise_refs:
            super().handle()
            return
        zero = ObjectID(b"0" * self.repo.object_format.hex_length)
        self.proto.write(receive_pack_advertisement(self.repo.refs, self.capabilities(), zero))

    def _apply_pack(self, refs: list[tuple[ObjectID, ObjectID, Ref]]) -> _Statuses:
        body = cast(_OneRepository, self.backend).body
        if body is not None and body.refuse_pack:
            yield from self._refuse(refs, body.reason.encode(), body)
            return
        store = self.repo.object_store
        # Per request: this handler's repository object is its own.
        store.add_thin_pack = _removing_temp_pack(store.add_thin_pack)  # type: ignore[attr-defined]
        for pack in getattr(store, "packs", ()):
            pack.name = functools.partial(_PACK_NAMES.name, pack)
        updates = cast(_Statuses, super()._apply_pack(refs))
        unpack = next(updates)  # receives the pack; dulwich moves no ref before this
        if unpack[1] != b"ok":
            updates.close()
            yield from self._refuse(refs, unpack[1], body)
            return
        yield unpack
        git_dir = Path(self.repo.controldir())  # type: ignore[attr-defined]
        try:
            with _ref_lock(git_dir):
                yield from self._update_refs(refs, updates)
        except _RefLockTimeout:
            updates.close()
            log.warning("%s: ref lock still held after %ss; push refused", git_dir, _REF_LOCK_SECONDS)
            for _, _, name in refs:
                yield name, _FAILED

    def _refuse(self, refs: list[tuple[ObjectID, ObjectID, Ref]], reason: bytes,
                body: BoundedBody | None) -> _Statuses:
        """Report a pack that was not stored, as git's receive-pack does (dulwich
        named no ref at all, which git prints as "remote failed to report status")."""
        log.info("push not stored: %s", reason.decode(errors="replace"))
        if body is not None:
            body.drain()  # git reads the report only once it has sent everything
        yield b"unpack", reason
        for _, _, name in refs:
            yield name, _UNPACKER_ERROR

    def _update_refs(self, refs: list[tuple[ObjectID, ObjectID, Ref]], updates: _Statuses) -> _Statuses:
        """Let dulwich move the refs whose old value still holds; report the rest."""
        zero = ObjectID(b"0" * self.repo.object_format.hex_length)
        stale = {name for old, _, name in refs if _current(self.repo.refs, name, zero) not in (None, old)}
        if stale:
            log.info("push lost a race for %s", b", ".join(sorted(stale)).decode(errors="replace"))
        if stale and self.has_capability(CAPABILITY_ATOMIC):
            updates.close()  # before dulwich has moved any ref
            for _, _, name in refs:
                yield name, _ATOMIC_FAILED
            return
        reported = 0
        landed: list[tuple[str, str, str]] = []
        olds: dict[bytes, tuple[bytes, bytes]] = {name: (old, new) for old, new, name in refs}
        try:
            for updated, status in updates:
                reported += 1
                status = _FAILED if updated in stale and status == b"ok" else status
                if status == b"ok" and updated in olds:
                    old, new = olds[updated]
                    landed.append((updated.decode(errors="replace"), old.decode(), new.decode()))
                yield updated, status
        except FileLocked as error:
            # Someone outside hostd (or a crashed writer's leftover) holds a ref lock.
            log.warning("ref is locked: %s", error.lockfilename)
            for _, _, unreported in refs[reported:]:
                yield unreported, _FAILED
        on_push = cast(_OneRepository, self.backend).on_push
        if landed and on_push is not None:
            on_push(landed)


def _release_memory() -> None:
    """Give a large push's memory back to the system.

    dulwich leaves the buffers of a received pack in reference cycles, freed
    only by a full collection; and glibc keeps what a request thread freed in
    that thread's arena. After a 100 MiB push a worker stayed at 213 MiB
    (56 MiB before it); this brings it back. Pushes are rare next to
    fetches, and this costs milliseconds.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _PackNameCache:
    """Pack names (dulwich's SHA over a pack's object names), kept per process.

    Before moving a received pack in, dulwich compares its name with every
    existing pack's, and computes each by reading that pack's whole index:
    15 ms for a flask-sized repository, hundreds for git/git's, on every
    push. An index is never rewritten in place (git and dulwich write a new
    file and rename it), so a name is kept per file (device, inode, size,
    mtime).
    """

    def __init__(self, entries: int = 4096) -> None:
        self._names: OrderedDict[tuple[int, int, int, int], bytes] = OrderedDict()
        self._entries = entries
        self._lock = threading.Lock()

    def name(self, pack: Pack) -> bytes:
        try:
            st = os.stat(pack._idx_path)
        except OSError:
            return Pack.name(pack)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._names.get(key)
        if known is not None:
            return known
        name = Pack.name(pack)
        with self._lock:
            self._names[key] = name
            if len(self._names) > self._entries:
                self._names.popitem(last=False)
        return name


_PACK_NAMES = _PackNameCache()


def _removing_temp_pack(add_thin_pack: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``DiskObjectStore.add_thin_pack`` to delete its temporary pack when it fails.

    dulwich leaves ``objects/tmp_pack_*`` behind when reading the pack fails
    (a client gone, a corrupt pack, one over the size limit). Its name is a
    local of that call, which the exception's traceback still holds.
    """

    def receive(*args: Any, **kwargs: Any) -> Any:
        try:
            return add_thin_pack(*args, **kwargs)
        except BaseException as error:
            temp = _temp_pack(error)
            if temp is not None:
                temp.unlink(missing_ok=True)
                log.info("removed %s of a push that failed: %s", temp.name, error)
            raise

    return receive


def _temp_pack(error: BaseException) -> Path | None:
    """The ``tmp_pack_*`` file ``add_thin_pack`` was writing when ``error`` interrupted it."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_name == "add_thin_pack":
            path = frame.f_locals.get("path")
            if isinstance(path, str) and os.path.basename(path).startswith("tmp_pack_"):
                return Path(path)
    return None


def _current(refs: RefsContainer, name: Ref, zero: ObjectID) -> ObjectID | None:
    """What ``name`` points at now (``zero`` if absent), as the client's old
    value must be; None for names dulwich refuses to write on its own."""
    if not name.startswith(b"refs/") or not check_ref_format(name):
        return None
    try:
        _, sha = refs.follow(name)
    except SymrefLoop:
        return None
    return sha or zero


@contextmanager
def _ref_lock(git_dir: Path) -> Iterator[None]:
    """Hold the repository's ref-update lock, shared by threads and workers.

    It is an ``flock`` on the ``refs`` directory itself: no file to leave
    behind, and the kernel releases it if a worker dies holding it.
    """
    fd = os.open(git_dir / "refs", os.O_RDONLY)
    try:
        deadline = time.monotonic() + _REF_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _RefLockTimeout() from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


class _UploadPack(UploadPackHandler):
    """dulwich's upload-pack, serving a want that was a tip a moment ago.

    Over HTTP a fetch reads the refs in one request and asks for them in the
    next; a push in between moves the tip, and dulwich refused the old one
    with an HTTP 500. git's upload-pack, in this stateless mode, serves any
    want reachable from a current ref (``check_non_tip``) and answers
    ``ERR upload-pack: not our ref`` for the others; so does this one.
    """

    def handle(self) -> None:
        if self.stateless_rpc and not self.advertise_refs:
            wants = self._peek_wants()
            tips = set(self.repo.get_refs().values())
            others = {sha for sha in wants if sha not in tips}
            unreachable = others - _reachable(self.repo.object_store, tips, others)
            if unreachable:
                self.proto.write_pkt_line(b"ERR upload-pack: not our ref " + min(unreachable))
                return
            if others:
                log.info("serving %d want(s) that moved on since the ref advertisement", len(others))
            # All of them: a tip could still move before dulwich reads the refs.
            cast(_Repository, self.repo).reachable_wants = frozenset(wants)
        super().handle()

    def _peek_wants(self) -> list[ObjectID]:
        """Read the request's want lines, then put them back for dulwich."""
        peeked: list[bytes | None] = []
        wants: list[ObjectID] = []
        for _ in range(_PEEK_WANTS):
            line = self.proto.read_pkt_line()
            peeked.append(line)
            if line is None or not line.startswith(b"want "):
                break
            sha = line[5:45]
            if valid_hexsha(sha):
                wants.append(ObjectID(sha))
        replay = _Replay(b"".join(pkt_line(line) for line in peeked), self.proto.read)
        self.proto = Protocol(replay.read, self.proto.write, report_activity=self.proto.report_activity)
        return wants


class _Replay:
    """A ``read`` that returns ``prefix`` first and then continues from ``rest``."""

    def __init__(self, prefix: bytes, rest: Callable[[int], bytes]) -> None:
        self._prefix = BytesIO(prefix)
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        data = self._prefix.read(size)
        if size < 0 or len(data) < size:
            data += self._rest(size if size < 0 else size - len(data))
        return data


def _reachable(store: BaseObjectStore, tips: Iterable[ObjectID], wanted: set[ObjectID]) -> set[ObjectID]:
    """Which of ``wanted`` are within ``_REACH_COMMITS`` commits (or tags) of ``tips``."""
    found: set[ObjectID] = set()
    if not wanted:
        return found
    queue, seen = deque(tips), set(tips)
    for _ in range(_REACH_COMMITS):
        if not queue or found == wanted:
            break
        sha = queue.popleft()
        if sha in wanted:
            found.add(sha)
        try:
            obj = store[sha]
        except KeyError:
            continue
        following = obj.parents if isinstance(obj, Commit) else [obj.object[1]] if isinstance(obj, Tag) else []
        for next_sha in following:
            if next_sha not in seen:
                seen.add(next_sha)
                queue.append(next_sha)
    return found
