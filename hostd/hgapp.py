"""The hg pool's application: Mercurial's hgweb, one instance per repository.

hgweb speaks the wire protocol; singlemalt has already authorized the
request. hgweb still checks permissions itself as a second line of defence:
``allow-push`` is ``*`` only together with :func:`require_singlemalt_write`, a
permission hook that refuses any push singlemalt did not authorize as a
write, and ``push_ssl`` stays on (the scheme comes from the trusted proxy).

With a push log, every accepted push is recorded by the transaction hooks of
:mod:`hostd.hgpushlog`; each request carries its own recorder (repository,
pushing user) in its environ, never on the shared hgweb instance.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mercurial import ui as uimod
from mercurial.hgweb import common as hgweb_common
from mercurial.hgweb import hgweb
from webob import exc

from hostd import hgpushlog
from hostd.accounts import Repo
from hostd.responses import text_error
from hostd.storage import Storage, StorageError
from singlemalt import Action, Target

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


# hgweb sends the wire protocol's error bodies without a Content-Type.
_PLAIN = [(b"Content-Type", b"text/plain; charset=utf-8")]


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
    """A Mercurial ui that reads no hgrc files: configuration is ours alone."""
    ui = uimod.ui()
    for section, name, value in (
        (b"web", b"push_ssl", b"true"),
        (b"web", b"allow-push", b"*"),
        (b"web", b"allow-archive", b""),
        (b"web", b"allow-read", b"*"),
        (b"ui", b"report_untrusted", b"false"),
        (b"ui", b"interactive", b"false"),
        (b"phases", b"publish", b"true"),
    ):
        ui.setconfig(section, name, value, b"hostd")
    return ui


class HgApp:
    """Serve the Mercurial wire protocol for repositories a resolver finds."""

    def __init__(self, resolve: Callable[[str], Repo | None], storage: Storage, *,
                 pushlog: hgpushlog.PushLogWriter | None = None) -> None:
        install_permission_hook()
        self.resolve = resolve
        self.storage = storage
        self.pushlog = pushlog
        self._ui = base_ui()
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
        repo = self.resolve(path)
        try:
            if repo is None:
                raise OSError(path)
            app = self._hgweb_for(self.storage.path(repo.ref, "hg"))
        except (OSError, StorageError):
            error = text_error(exc.HTTPNotFound, "repository not found")
            return error(environ, start_response)  # type: ignore[no-any-return]
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + path
        inner["PATH_INFO"] = ""
        if self.pushlog is not None:
            # REMOTE_USER is set by singlemalt, which authorizes a write only
            # for an authenticated user; the fallback marks a misconfiguration.
            user = environ.get("REMOTE_USER") or hgpushlog.UNKNOWN_USER
            inner[hgpushlog.ENVIRON_KEY] = hgpushlog.PushRecorder(self.pushlog, repo.ref, user)
        return _refuse_malformed(app, inner, environ, start_response)


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


def _refuse_malformed(app: Any, inner: WSGIEnviron, environ: WSGIEnviron,
                      start_response: StartResponse) -> Iterable[bytes]:
    """Run hgweb; a request it cannot parse is a 400, not a 500.

    hgweb reads a command's arguments (and a page's query) while producing its
    first chunk, before it calls ``start_response``; a missing or garbled one
    (``cmd=known`` without ``nodes``, ``cmd=filelog`` without ``node``)
    raises KeyError, ValueError or UnicodeError there. Only the first chunk is
    taken here; the rest streams through untouched.
    """
    started = False

    def tracking(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        nonlocal started
        started = True
        return start_response(status, headers, exc_info)

    result = app(inner, tracking)
    rest = iter(result)
    try:
        first = [next(rest)]
    except StopIteration:
        first = []
    except (KeyError, ValueError, UnicodeError, IndexError) as error:
        if hasattr(result, "close"):
            result.close()
        if started:
            raise
        log.info("refused malformed hg request %s?%s: %s: %s", inner.get("SCRIPT_NAME"),
                 environ.get("QUERY_STRING", "")[:200], type(error).__name__, error)
        refusal = text_error(exc.HTTPBadRequest, "malformed Mercurial request: missing or invalid argument")
        return refusal(environ, start_response)  # type: ignore[no-any-return]
    return _Resumed(first, rest, result)
