"""The hg pool's application: Mercurial's hgweb, one instance per repository.

hgweb speaks the wire protocol; singlemalt has already authorized the
request. hgweb still checks permissions itself as a second line of defence:
``allow-push`` is ``*`` only together with :func:`require_singlemalt_write`, a
permission hook that refuses any push singlemalt did not authorize as a
write, and ``push_ssl`` stays on (the scheme comes from the trusted proxy).

With a push log, every accepted push is recorded by the transaction hooks of
:mod:`hostd.hg.hooks`; each request carries its own recorder (repository,
pushing user) in its environ, never on the shared hgweb instance.

No argument a client sends makes hgweb answer 500 or cut a response short:
what hgweb would only fail on after it started streaming is refused before
it runs (:func:`check_request`), and what it raises before its first chunk
is mapped to 400 (malformed) or 404 (unknown revision) by
:func:`_refuse_malformed`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from mercurial import error as hgerror
from mercurial import hg, wireprotov1peer, wireprotov1server
from mercurial import ui as uimod
from mercurial.hgweb import common as hgweb_common
from mercurial.hgweb import hgweb
from webob import exc

from hostd.guard.policy import decided_repository
from hostd.hg import hooks as hgpushlog
from hostd.responses import text_error
from hostd.store.storage import Storage, StorageError
from singlemalt import Action, Target
from singlemalt.challenge import reply

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


# hgweb sends the wire protocol's error bodies without a Content-Type.
_PLAIN = [(b"Content-Type", b"text/plain; charset=utf-8")]

#: What Mercurial's own client sends inside a ``batch``: its ``@batchable``
#: peer methods.  hgweb's batch asserts that each result is plain bytes, so a
#: streaming command inside one (getbundle, stream_out, unbundle) is a 500.
BATCHABLE: Final = frozenset(
    name.encode() for name in dir(wireprotov1peer.wirepeer)
    if getattr(getattr(wireprotov1peer.wirepeer, name), "batchable", None) is not None
)
#: A bundle2 part parameter is at most 255 bytes; getbundle puts each
#: ``listkeys`` namespace in one, and fails only after the response started.
_MAX_PART_PARAM: Final = 255
_MAX_NAME: Final = 255


def require_singlemalt_write(web: Any, req: Any, op: bytes | None) -> None:
    """hgweb permission hook: only what singlemalt authorized gets through."""
    target = req.rawenv.get(b"singlemalt.target")
    if not isinstance(target, Target):
        # Reached hgweb without passing singlemalt: refuse everything.
        raise hgweb_common.ErrorResponse(hgweb_common.HTTP_UNAUTHORIZED, b"not authorized", _PLAIN)
    if op in (b"push", b"upload") and target.action is not Action.WRITE:
        raise hgweb_common.ErrorResponse(hgweb_common.HTTP_FORBIDDEN, b"push not authorized", _PLAIN)


def install_permission_hook() -> None:
    """Add the hook to hgweb's hook list once (it is process-wide in Mercurial)."""
    if require_singlemalt_write not in hgweb_common.permhooks:
        hgweb_common.permhooks.append(require_singlemalt_write)


def base_ui() -> Any:
    """A Mercurial ui that reads no hgrc files: configuration is ours alone.

    ``server.preferuncompressed`` makes a full clone a stream clone (the
    store's files as they are) instead of a bundle the client must unpack
    and apply revision by revision. ``hg serve`` offers the same stream to
    any client asking with ``--stream``; preferring it is only the default.
    Measured on the flask-sized history (tests/bench), the client's CPU for
    a clone drops from about 4.5 s to under 1 s and the server's from about
    1.5 s to 0.1 s, for a fifth more bytes (15.0 MB, not 12.4: revlogs are
    compressed already).
    Mercurial falls back to the bundle by itself when the client lacks one
    of the store's requirements, and never streams a repository holding
    secret changesets. The stream takes the store lock while it lists the
    files, so a clone starting during a push waits for that push to commit.
    """
    ui = uimod.ui()
    for section, name, value in (
        (b"web", b"push_ssl", b"true"),
        (b"web", b"allow-push", b"*"),
        (b"web", b"allow-archive", b""),
        (b"web", b"allow-read", b"*"),
        (b"ui", b"report_untrusted", b"false"),
        (b"ui", b"interactive", b"false"),
        (b"phases", b"publish", b"true"),
        (b"server", b"preferuncompressed", b"true"),
    ):
        ui.setconfig(section, name, value, b"hostd")
    return ui


class HgApp:
    """Serve the Mercurial wire protocol for the repository singlemalt's decision carries."""

    def __init__(self, storage: Storage, *,
                 pushlog: hgpushlog.PushLogWriter | None = None, base_url: str | None = None) -> None:
        install_permission_hook()
        self.storage = storage
        self.pushlog = pushlog
        self._ui = base_ui()
        self._server = _server_environ(base_url)
        if pushlog is not None:
            hgpushlog.install_hooks(self._ui)
        self._apps: dict[tuple[Path, int, int], Any] = {}
        self._lock = threading.Lock()

    def _hgweb_for(self, path: Path) -> Any:
        """hgweb instances are reused: opening a repository per request is slow.

        The key includes the identity of ``.hg/requires`` (written once, by
        ``hg init``) so a repository deleted and created again under the same
        name never reuses the old instance, even when the inode is reused.
        """
        requires = os.stat(path / ".hg" / "requires")
        key = (path, requires.st_ino, requires.st_ctime_ns)
        with self._lock:
            app = self._apps.get(key)
            if app is None:
                self._apps = {k: v for k, v in self._apps.items() if k[0] != path}
                app = hgweb(os.fsencode(path), baseui=self._ui)
                self._apps[key] = app
            return app

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "").strip("/")
        repo = decided_repository(environ)
        try:
            if repo is None:
                raise OSError(path)
            repository = self.storage.path(repo.ref, "hg")
            app = self._hgweb_for(repository)
        except (OSError, StorageError):
            error = text_error(exc.HTTPNotFound, "repository not found")
            return error(environ, start_response)  # type: ignore[no-any-return]
        refusal = check_request(environ, repository, self._ui)
        if refusal is not None:
            status, reason = refusal
            log.info("refused hg request %s?%s: %s", path, environ.get("QUERY_STRING", "")[:200], reason)
            return reply(environ, start_response, text_error(status, reason))
        target = environ.get("singlemalt.target")
        if isinstance(target, Target) and target.action is Action.WRITE:
            recover_abandoned(repository, self._ui)
        inner = dict(environ, **self._server)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + path
        inner["PATH_INFO"] = ""
        if self.pushlog is not None:
            # REMOTE_USER is set by singlemalt, which authorizes a write only
            # for an authenticated user; the fallback marks a misconfiguration.
            user = environ.get("REMOTE_USER") or hgpushlog.UNKNOWN_USER
            inner[hgpushlog.ENVIRON_KEY] = hgpushlog.PushRecorder(self.pushlog, repo.ref, user)
        return _refuse_malformed(app, inner, environ, start_response)


def recover_abandoned(path: Path, ui: Any) -> bool:
    """Roll back the transaction of a push that was killed, before the next push runs into it.

    A worker killed inside ``unbundle`` leaves ``.hg/store/journal``, and
    Mercurial refuses every later transaction ("abandoned transaction
    found", a 500 through hgweb) until ``hg recover`` runs. The store lock
    decides: taking it waits for a live push to finish and breaks the lock
    of a dead writer on this host, so a journal still there once we hold it
    is abandoned. Whether it was rolled back; never raises for a lock or
    store problem (hgweb then answers as it would have).
    """
    if not (path / ".hg" / "store" / "journal").exists():
        return False
    try:
        repo = hg.repository(ui, os.fsencode(path))
        with repo.lock():
            if not repo.svfs.exists(b"journal"):
                return False
            repo.ui.pushbuffer()
            try:
                repo.recover()
            finally:
                repo.ui.popbuffer()
    except (hgerror.LockError, hgerror.Abort, hgerror.RepoError, OSError) as error:
        log.warning("could not roll back the abandoned transaction in %s: %s", path, error)
        return False
    log.warning("rolled back the abandoned transaction of a killed push in %s", path)
    return True


Refusal = tuple[type[exc.HTTPException], str]


def check_request(environ: WSGIEnviron, repository: Path, ui: Any) -> Refusal | None:
    """Refuse what hgweb would fail on only after its response started, or not cleanly.

    Returns the status and reason of the refusal, or None for a request
    hgweb may handle. Never raises.
    """
    query = _params(environ.get("QUERY_STRING", ""))
    header_args = _params(b"".join(_header_chunks(environ)))
    if query is None or header_args is None:
        return exc.HTTPBadRequest, "malformed Mercurial request: undecodable arguments"
    cmd = query.get(b"cmd")
    if cmd is None:
        return None
    if cmd not in wireprotov1server.commands:
        return _check_page(cmd, query)
    post = str(environ.get("HTTP_X_HGARGS_POST", "0")).strip()
    if post != "0":
        # hgweb would read that much of the body into memory; we never offer
        # httppostargs, so no Mercurial client sends its arguments there.
        return exc.HTTPBadRequest, "arguments in the request body are not accepted (no httppostargs)"
    # hgweb's wire arguments: the query's, then X-HgArg-N's over them.
    args = {**query, **header_args}
    if cmd == b"batch":
        ops = {pair.partition(b" ")[0] for pair in args.get(b"cmds", b"").split(b";")}
        if not ops <= BATCHABLE:
            return exc.HTTPBadRequest, "a batch may only hold commands Mercurial's client batches"
    if cmd == b"getbundle":
        if any(len(name) > _MAX_PART_PARAM for name in args.get(b"listkeys", b"").split(b",")):
            return exc.HTTPBadRequest, "listkeys namespace too long"
    if cmd == b"get_cached_bundle_inline":
        bundle = args.get(b"path")
        if bundle is not None and not _inline_bundle_exists(bundle, repository, ui):
            # Whether the path is unsafe, outside the cache or missing, the
            # answer is the same: Mercurial's own messages tell them apart.
            return exc.HTTPNotFound, "clone bundle not found"
    return None


def _check_page(cmd: bytes, query: dict[bytes, bytes]) -> Refusal | None:
    """hgweb's static page answers an unsafe name with 500 (no body) and an over-long one with 500."""
    name = query.get(b"file")
    if cmd == b"static" and name is not None and not _safe_relative(name):
        return exc.HTTPNotFound, "not found"
    return None


def _inline_bundle_exists(name: bytes, repository: Path, ui: Any) -> bool:
    """Whether ``name`` is a regular file inside the repository's inline clone bundle cache."""
    if not _safe_relative(name):
        return False
    cache = ui.config(b"server", b"peer-bundle-cache-root") or b"bundle-cache"
    root = os.path.realpath(repository / ".hg" / os.fsdecode(cache))
    target = os.path.realpath(os.path.join(root, os.fsdecode(name)))
    return target.startswith(root + os.sep) and os.path.isfile(target)


def _safe_relative(name: bytes) -> bool:
    """hgweb's own rule for names it opens (no empty, ``.`` or ``..`` part), within file name limits."""
    return (b"\0" not in name and hgweb_common.ispathsafe(name)
            and all(len(part) <= _MAX_NAME for part in name.split(b"/")))


def _params(query: str | bytes) -> dict[bytes, bytes] | None:
    """Query-string parameters as hgweb reads wire arguments (first value wins); None if undecodable."""
    try:
        raw = query.encode("latin-1") if isinstance(query, str) else query
        params: dict[bytes, bytes] = {}
        for name, value in parse_qsl(raw, keep_blank_values=True):
            params.setdefault(name, value)
    except (UnicodeError, ValueError):
        return None
    return params


def _header_chunks(environ: WSGIEnviron) -> Iterable[bytes]:
    """``X-HgArg-1..N`` as Mercurial reassembles them: up to the first gap."""
    index = 1
    while (value := environ.get(f"HTTP_X_HGARG_{index}")) is not None:
        yield str(value).encode("latin-1", "replace")
        index += 1


def _server_environ(base_url: str | None) -> dict[str, str]:
    """The environ keys hgweb completes its absolute URLs from, set from ``base_url``.

    A single-repository hgweb ignores ``web.baseurl`` (only hgwebdir reads
    it) and builds the URLs of its pages (feeds, ``urlbase``) from ``Host``
    and ``SERVER_NAME``, which servers take from the client's ``Host``.
    """
    if base_url is None:
        return {}
    url = urlsplit(base_url)
    port = str(url.port or (443 if url.scheme == "https" else 80))
    return {"HTTP_HOST": url.netloc, "SERVER_NAME": url.hostname or "", "SERVER_PORT": port}


class _Resumed:
    """The rest of an iterable whose first chunk was already taken; closes it."""

    def __init__(self, first: list[bytes], rest: Any, result: Any) -> None:
        self._first, self._rest, self._result = first, rest, result

    def __iter__(self) -> Any:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        if hasattr(self._result, "close"):
            self._result.close()


#: Raised by hgweb for a revision, file or node that is not there (LookupError
#: is also a KeyError, so it is tested first).  RevlogError is what the
#: index raises for an unknown node in a revset (changegroup's ``roots``);
#: on a corrupt repository it would also land here, and is logged.
_UNKNOWN: Final = (hgerror.LookupError, hgerror.RepoLookupError, hgerror.RevlogError)
#: Raised while hgweb reads a missing or garbled argument (``cmd=known``
#: without ``nodes``, odd-length hex, an empty revset).
_MALFORMED: Final = (KeyError, ValueError, UnicodeError, IndexError, hgerror.ParseError)


def _refuse_malformed(app: Any, inner: WSGIEnviron, environ: WSGIEnviron,
                      start_response: StartResponse) -> Iterable[bytes]:
    """Run hgweb; a request it cannot parse is a 400, one naming what is not there a 404, not a 500.

    hgweb reads a command's arguments (and a page's query) and runs the
    command while producing its first chunk, before it calls
    ``start_response``; what the client got wrong raises there. Only the
    first chunk is taken here; the rest streams through untouched (what
    would fail later is refused up front by :func:`check_request`).
    """
    started = False

    def tracking(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        nonlocal started
        started = True
        if status[:1] in ("4", "5") and not any(name.lower() == "content-type" for name, _ in headers):
            # hgweb's wire protocol errors ("405 push requires POST request") have none.
            headers = [*headers, ("Content-Type", "text/plain; charset=utf-8")]
        return start_response(status, headers, exc_info)

    result = app(inner, tracking)
    rest = iter(result)
    try:
        first = [next(rest)]
    except StopIteration:
        first = []
    except (*_UNKNOWN, *_MALFORMED) as error:
        if hasattr(result, "close"):
            result.close()
        if started:
            raise
        unknown = isinstance(error, _UNKNOWN)
        log.info("refused %s hg request %s?%s: %s: %s", "unknown" if unknown else "malformed",
                 inner.get("SCRIPT_NAME"), environ.get("QUERY_STRING", "")[:200], type(error).__name__, error)
        if unknown:
            refusal = text_error(exc.HTTPNotFound, "unknown revision, node or file")
        else:
            refusal = text_error(exc.HTTPBadRequest, "malformed Mercurial request: missing or invalid argument")
        return refusal(environ, start_response)  # type: ignore[no-any-return]
    return _Resumed(first, rest, result)
