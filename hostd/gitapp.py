"""The git pool's application: git smart HTTP, and nothing else.

singlemalt has already decided who may do what before a request gets here;
this app maps the URL to a repository on disk and lets dulwich speak the
protocol. Only the smart protocol is served: the dumb-protocol paths and
``git-upload-archive`` are refused with a message, never passed through.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import Backend, BackendRepo
from dulwich.web import HTTPGitApplication, LimitedInputFilter
from webob import exc

from hostd.accounts import Repo
from hostd.responses import text_error
from hostd.storage import Storage

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


class _OneRepository(Backend):
    """A dulwich backend that serves the single repository already resolved."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_repository(self, path: str) -> BackendRepo:
        try:
            return DulwichRepo(str(self.path))  # type: ignore[return-value]
        except NotGitRepository:
            raise
        except OSError as error:
            raise NotGitRepository(str(error)) from error


class GitApp:
    """Serve git smart HTTP for repositories a resolver finds."""

    def __init__(
        self,
        resolve: Callable[[str], Repo | None],
        storage: Storage,
        *,
        max_request_bytes: int,
    ) -> None:
        self.resolve = resolve
        self.storage = storage
        self.max_request_bytes = max_request_bytes

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
        repo = self.resolve(match["repo"])
        if repo is None:
            raise text_error(exc.HTTPNotFound, "Repository not found.")
        backend = _OneRepository(self.storage.path(repo.ref, "git"))
        inner = dict(environ, PATH_INFO=endpoint)
        _prepare_body(inner)
        app = LimitedInputFilter(HTTPGitApplication(backend), self.max_request_bytes)
        return app(inner, start_response)  # type: ignore[arg-type]


def _prepare_body(environ: WSGIEnviron) -> None:
    """Hand dulwich a plain, decoded request body.

    gunicorn (like any WSGI server) removes the chunked transfer coding before
    the app reads ``wsgi.input``, but leaves the ``Transfer-Encoding`` header
    in the environ; dulwich would then try to de-chunk the body a second time
    and misread a push. git gzips large upload-pack requests.
    """
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        environ["wsgi.input"] = gzip.GzipFile(fileobj=environ["wsgi.input"], mode="rb")
        environ.pop("HTTP_CONTENT_ENCODING")
        environ.pop("CONTENT_LENGTH", None)
