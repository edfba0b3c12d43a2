"""dulwich's own git smart HTTP handlers: the git pool where git is not installed.

With ``HOSTD_GIT_PACK=dulwich``, or no ``git`` on ``PATH``, fetches and pushes
are served by dulwich in Python (:func:`serve`); the ref advertisement a push
starts with is dulwich's on every path (:func:`receive_pack_refs`). Only
dulwich's public handler API is used: handlers passed to
``HTTPGitApplication``, overriding ``handle()``, a backend's
``open_repository()`` and a repository's ``find_missing_objects()``.

What it adds to dulwich:

- :class:`DulwichUploadPack` serves a want that was a tip a moment ago (a
  push moved it between a fetch's two requests), as git's upload-pack does;
- :class:`DulwichReceivePack` logs the refs a push moved;
- the repositories a request opened are closed when its response is done
  (dulwich never closes them: their packs stay mapped until collected), and
  a large push is followed by a full collection.

What it does **not** guarantee, unlike git's receive-pack (:mod:`hostd.git.receive`):

- a push that loses a race for a ref (its old value is stale) may be told
  ``ok`` while its commit is dropped (dulwich 1.2 does not compare-and-swap),
  two pushes of one ref at once may end one of them with a 500, and
  ``--atomic`` moves refs one at a time;
- a push over the size limit, corrupt or cut off is reported only as
  ``unpack <reason>`` without its refs (git prints "remote failed to report
  status"), and leaves ``objects/tmp_pack_*`` for ``hostd maintain``;
- the push log is the difference of the refs before and after the push,
  so a concurrent push's update may be logged for this pusher too;
- a received pack is held in memory about three times over.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from dulwich.errors import NotGitRepository
from dulwich.object_store import BaseObjectStore, MissingObjectFinder
from dulwich.objects import Commit, ObjectID, Tag, valid_hexsha
from dulwich.protocol import CAPABILITY_FILTER, Protocol, pkt_line
from dulwich.refs import Ref
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import Backend, BackendRepo, ReceivePackHandler, UploadPackHandler
from dulwich.web import HTTPGitApplication
from webob import exc

from hostd.git.advert import read_refs, receive_pack_advertisement
from hostd.git.body import BodyRefused, BoundedBody, body_refusal
from hostd.responses import text_error

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
PushRecorder = Callable[[list[tuple[str, str, str]]], None]

# How many commits back from the tips a fetch looks for a want that is no
# longer a tip (see DulwichUploadPack), and how many want lines it reads ahead
# to find them (dulwich checks any further ones alone, against the tips only).
_REACH_COMMITS = 10_000
_PEEK_WANTS = 10_000
#: A push at least this large is followed by :func:`release_memory`.
COLLECT_AFTER_BYTES = 8 << 20
# glibc's malloc_trim(pad); None where the C library has none (musl, macOS).
_MALLOC_TRIM: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)


class DulwichRepository(DulwichRepo):
    """A repository whose upload-pack may also grant wants that are not tips.

    ``reachable_wants`` is set per request (a backend opens a new instance for
    each) by :class:`DulwichUploadPack`, after it has checked them.
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


class OneRepository(Backend):
    """A dulwich backend that serves the single repository already resolved.

    One is made per request, so it also carries that request's push recorder,
    and closes what it opened when the response is done.
    """

    def __init__(self, path: Path, on_push: PushRecorder | None = None) -> None:
        self.path = path
        self.on_push = on_push
        self._opened: list[DulwichRepository] = []

    def open_repository(self, path: str) -> BackendRepo:
        try:
            repo = DulwichRepository(str(self.path))
        except NotGitRepository:
            raise
        except OSError as error:
            raise NotGitRepository(str(error)) from error
        self._opened.append(repo)
        return repo

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()


def receive_pack_refs(git_dir: Path) -> bytes:
    """dulwich's receive-pack ref advertisement (without the ``# service`` header); 404 if not a repository."""
    backend = OneRepository(git_dir)
    out = BytesIO()
    try:
        DulwichReceivePack(backend, [str(git_dir)], Protocol(BytesIO().read, out.write),
                           stateless_rpc=True, advertise_refs=True).handle()
    except NotGitRepository:
        raise text_error(exc.HTTPNotFound, "Repository not found.") from None
    finally:
        backend.close()
    return out.getvalue()


def serve(environ: WSGIEnviron, start_response: StartResponse, git_dir: Path, body: BoundedBody,
          on_push: PushRecorder | None) -> Iterable[bytes]:
    """Answer one smart HTTP request (``PATH_INFO`` is the endpoint) with dulwich's handlers."""
    backend = OneRepository(git_dir, on_push)
    push = environ["PATH_INFO"] == "/git-receive-pack"
    if push:
        environ["wsgi.input"] = _DrainingWhenRefused(body)
    git = HTTPGitApplication(
        backend, handlers={b"git-upload-pack": DulwichUploadPack, b"git-receive-pack": DulwichReceivePack}
    )
    response = _DeferredStart(start_response)

    def finish() -> None:
        backend.close()
        if push and body.received >= COLLECT_AFTER_BYTES:
            release_memory()

    try:
        app_iter = git(environ, response.start_response)
    except BaseException:
        finish()
        raise
    return _served(app_iter, environ, response, body, finish)


class DulwichReceivePack(ReceivePackHandler):
    """dulwich's receive-pack, advertising refs read once and logging the refs a push moved."""

    def handle(self) -> None:
        zero = ObjectID(b"0" * self.repo.object_format.hex_length)
        if self.advertise_refs:
            self.proto.write(receive_pack_advertisement(self.repo.refs, self.capabilities(), zero))
            return
        before, _ = read_refs(self.repo.refs)
        super().handle()
        after, _ = read_refs(self.repo.refs)
        on_push = cast(OneRepository, self.backend).on_push
        moved = [(name.decode(errors="replace"), before.get(name, zero).decode(), after.get(name, zero).decode())
                 for name in sorted(before.keys() | after.keys())
                 if name != b"HEAD" and before.get(name) != after.get(name)]
        if moved and on_push is not None:
            on_push(moved)


class DulwichUploadPack(UploadPackHandler):
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
            cast(DulwichRepository, self.repo).reachable_wants = frozenset(wants)
        super().handle()

    def capabilities(self) -> list[bytes]:
        """dulwich's, without ``filter``.

        dulwich 1.2 filters a clone's pack but then refuses the fetch of a
        blob the clone left out, so a partial clone could never be checked
        out. Without the capability git says "filtering not recognized by
        server, ignoring" and clones everything.
        """
        return [cap for cap in super().capabilities() if cap != CAPABILITY_FILTER]

    def set_client_capabilities(self, caps: Iterable[bytes]) -> None:
        """The client's, less any ``filter``: git 2.39 still names it, bare, after its
        "filtering not recognized" warning, and dulwich would refuse the request."""
        super().set_client_capabilities(
            [cap for cap in caps if cap != CAPABILITY_FILTER and not cap.startswith(CAPABILITY_FILTER + b"=")])

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


def release_memory() -> None:
    """Give a large push's memory back to the system.

    dulwich leaves the buffers of a received pack in reference cycles, freed
    only by a full collection; and glibc keeps what a request thread freed in
    that thread's arena. After a 100 MiB push a worker stayed at 213 MiB
    (56 MiB before it); this brings it back.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _DrainingWhenRefused:
    """A push body that, once refused, reads the rest (bounded) before dulwich reports why:
    git reads the report only once it has sent everything."""

    def __init__(self, body: BoundedBody) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(size)
        except BodyRefused:
            self._body.drain()
            raise


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

    If the body was refused before any of the response was sent, the answer
    is the HTTP error with the reason instead.
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
        yield from body_refusal(body.refused)(environ, response.server_start_response)
    finally:
        try:
            close_iter = getattr(app_iter, "close", None)
            if close_iter is not None:
                close_iter()
        finally:
            close()
