"""The git pool's application: git smart HTTP, and nothing else.

singlemalt has already decided who may do what before a request gets here;
this app maps the URL to a repository on disk, checks the request, and hands
it to git: clones and fetches to git's upload-pack (:mod:`hostd.git.upload`),
pushes to git's receive-pack (:mod:`hostd.git.receive`), wherever the
composition root found git (``HOSTD_GIT_PACK``); without git, to dulwich's
handlers (:mod:`hostd.git.fallback`, with what that does not guarantee).
Only the smart protocol is served: the dumb-protocol paths and
``git-upload-archive`` are refused with a message, never passed through.

The ref advertisement a push starts with is dulwich's, byte for byte, but its
refs are read once instead of twice and the answer is kept per ref state
(:mod:`hostd.git.advert`), on every path; it offers only capabilities git's
receive-pack accepts.

Request bodies are limited to ``max_request_bytes`` (``HOSTD_MAX_PUSH_BYTES``),
measured here because only the worker sees a chunked body's length (git sends
every push over ``http.postBuffer``, 1 MiB, chunked, and HTTP/2 bodies have no
length at all). A push over the limit is not stored (git is not even started
if its ``Content-Length`` says so), and the client is told why in
receive-pack's own report (``unpack <reason>``), which git prints as
``error: remote unpack failed: <reason>``. git shows a 413 only as "RPC
failed; HTTP 413", followed by "Everything up-to-date", so pushes never get
one once their ref commands are read; fetch requests over the limit do.
Before the report the rest of the body is read and dropped, up to twice the
limit in all: git reads the answer only once it has sent its whole pack, and
meets a closed connection otherwise ("Send failure: Broken pipe"). A failed
or interrupted push leaves nothing behind (see :mod:`hostd.git.receive`).

A request body with a ``Content-Encoding`` other than gzip is refused (415);
a gzip body is bounded in how far it inflates (:mod:`hostd.git.body`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from webob import exc

from hostd.git import fallback
from hostd.git.advert import respond, service_header
from hostd.git.body import (
    COMPRESSED_REQUEST_LIMIT,
    BodyRefused,
    BoundedBody,
    body_refusal,
    content_coding,
    content_length,
    mib,
    prepare_body,
)
from hostd.git.pushwire import read_commands
from hostd.git.receive import PushRecorder, ReceivePack, push_recorder, respond_refused
from hostd.git.upload import UploadPack
from hostd.guard.policy import decided_repository
from hostd.responses import text_error
from hostd.store.accounts import Repo
from hostd.store.pushlog import PushLog
from hostd.store.refstate import PerRefState
from hostd.store.storage import Storage, StorageError

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

# The repository part is everything before the endpoint; singlemalt's policy
# has resolved it already (its decision carries the row), so this regex only
# has to find the endpoint.
_SMART = re.compile(r"\A/.+?(?P<endpoint>/info/refs|/git-upload-pack|/git-receive-pack)\Z")
_DUMB = re.compile(
    r"/(HEAD|objects/info/(packs|alternates|http-alternates)|objects/[0-9a-f]{2}/[0-9a-f]{38}"
    r"|objects/pack/[^/]+\.(pack|idx))\Z"
)
_SERVICES = frozenset({"git-upload-pack", "git-receive-pack"})


class GitApp:
    """Serve git smart HTTP for the repository singlemalt's decision carries (see ``decided_repository``)."""

    def __init__(
        self,
        storage: Storage,
        *,
        max_request_bytes: int,
        pushlog: PushLog | None = None,
        upload_pack: UploadPack | None = None,
        receive_pack: ReceivePack | None = None,
    ) -> None:
        self.storage = storage
        self.max_request_bytes = max_request_bytes
        self.pushlog = pushlog
        self.upload_pack = upload_pack
        self.receive_pack = receive_pack
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
        repo = decided_repository(environ)
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
        if push:
            return self._push(inner, start_response, git_dir, body, self._recorder(repo, environ))
        if self.upload_pack is not None:
            return self._native(inner, start_response, git_dir, body)
        return fallback.serve(inner, start_response, git_dir, body, None)

    def _receive_pack_refs(self, environ: WSGIEnviron, start_response: StartResponse,
                           git_dir: Path) -> Iterable[bytes]:
        """The ref advertisement a push starts with, built once per ref state (see ``hostd.git.advert``)."""
        advertisement = self.adverts.get(git_dir, "receive-pack", lambda: fallback.receive_pack_refs(git_dir))
        return respond(environ, start_response, "git-receive-pack", service_header("git-receive-pack") + advertisement)

    def _push(self, environ: WSGIEnviron, start_response: StartResponse, git_dir: Path, body: BoundedBody,
              on_push: PushRecorder | None) -> Iterable[bytes]:
        """A push: git's receive-pack (see ``hostd.git.receive``), or dulwich's without git.

        Its ref commands are read first: a body refused within them can still
        get an HTTP error; past them, only the report reaches git's user.
        """
        if self.receive_pack is None and not body.refuse_pack:
            return fallback.serve(environ, start_response, git_dir, body, on_push)
        try:
            commands = read_commands(body)
        except BodyRefused as error:
            log.info("refused a receive-pack request body: %s", error.reason)
            raise body_refusal(error) from None
        if body.refuse_pack:
            return respond_refused(start_response, commands, body, body.reason)
        assert self.receive_pack is not None
        return self.receive_pack.receive_pack(environ, start_response, git_dir, body, commands, on_push)

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
            raise body_refusal(error) from None

    def _recorder(self, repo: Repo, environ: WSGIEnviron) -> PushRecorder | None:
        if self.pushlog is None:
            return None
        return push_recorder(self.pushlog, repo.ref, environ.get("REMOTE_USER", ""))


