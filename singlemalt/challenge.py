"""Every response singlemalt itself sends, built and rendered here.

The middleware raises one of these ``webob.exc`` responses where it makes a
decision, and :func:`reply` renders it.  Bodies are ``text/plain`` because
git prints a plain-text error body to the user (``remote: ...``); Mercurial
prints the status line's reason phrase instead, so 400 and 403 carry the
reason there as well::

    return reply(environ, start_response, forbidden("token is read-only"),
                 drain_limit=DEFAULT_DRAIN_LIMIT)

Before answering a request early, :func:`reply` reads and discards up to
``drain_limit`` bytes of its body: an HTTP client that is still sending its
request (Mercurial's httplib-based client does this) would otherwise never
read the answer, and deadlock or see a reset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import webob.exc

if TYPE_CHECKING:
    from _typeshed.wsgi import InputStream, StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

#: Bytes of request body read and discarded before an early reply.  64 KiB
#: covers every request body a client sends before it knows it is allowed
#: in (hg wire-protocol arguments, git upload-pack negotiation of a few
#: hundred "have" lines), while a push of real data is cut short with
#: ``Connection: close`` instead of tying the worker up while it uploads
#: (unless the middleware's ``write_drain_limit`` says to read refused
#: pushes whole, which hg needs to see the answer).
DEFAULT_DRAIN_LIMIT: Final = 64 * 1024
_CHUNK: Final = 8192
_MAX_REASON: Final = 200
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def bad_request(reason: str) -> webob.exc.HTTPException:
    """400: the request is malformed (a classifier refused it)."""
    return _plain(webob.exc.HTTPBadRequest, reason, reason_phrase=True)


def unauthorized(realm: str) -> webob.exc.HTTPException:
    """401 with a Basic challenge, so git and hg ask for credentials."""
    response = _plain(webob.exc.HTTPUnauthorized, "authentication required")
    response.headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
    return response


def forbidden(reason: str) -> webob.exc.HTTPException:
    """403: the identity may know the repository exists, and why it is refused."""
    return _plain(webob.exc.HTTPForbidden, reason, reason_phrase=True)


def not_found() -> webob.exc.HTTPException:
    """404: used for repositories the identity may not know about, too."""
    return _plain(webob.exc.HTTPNotFound, "not found")


def too_many_requests(retry_after: int, reason: str = "too many failed logins") -> webob.exc.HTTPException:
    """429: too many failed logins (or another ``reason``); ``Retry-After`` says when to try again."""
    response = _plain(webob.exc.HTTPTooManyRequests, reason)
    response.headers["Retry-After"] = str(retry_after)
    return response


def unavailable(reason: str, retry_after: int) -> webob.exc.HTTPException:
    """503: the decision cannot be made now (:class:`singlemalt.Unavailable`); retry after ``retry_after`` s."""
    response = _plain(webob.exc.HTTPServiceUnavailable, reason, reason_phrase=True)
    response.headers["Retry-After"] = str(retry_after)
    return response


def reply(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    response: webob.exc.HTTPException,
    *,
    drain_limit: int = DEFAULT_DRAIN_LIMIT,
) -> Iterable[bytes]:
    """Render ``response`` after draining (a bounded amount of) the request body."""
    if not drain(environ, drain_limit):
        # The client may still be sending: tell the server not to reuse
        # the connection, whose next bytes would be the rest of this body.
        response.headers["Connection"] = "close"
    app_iter: Iterable[bytes] = response(environ, start_response)
    return app_iter


def drain(environ: WSGIEnvironment, limit: int) -> bool:
    """Read and discard the request body up to ``limit`` bytes; whether all of it was read."""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    length = _content_length(environ.get("CONTENT_LENGTH"))
    if not chunked and length == 0:
        return True
    if length is None and not chunked:
        return False
    if "100-continue" in str(environ.get("HTTP_EXPECT", "")).lower():
        # The client waits for "100 Continue" before sending the body;
        # reading would invite it to upload.  Answer and close instead.
        return False
    if chunked and not environ.get("wsgi.input_terminated"):
        # Without a server that ends wsgi.input at the last chunk, reading
        # could block forever.
        return False
    wanted = min(length or limit, limit) if not chunked else limit
    try:
        received = _discard(environ["wsgi.input"], wanted)
    # Whatever the server's input stream raises (client gone, timeout), the
    # body is not drained; the reply itself must still go out.
    except Exception as error:  # noqa: BLE001
        log.debug("could not drain the request body: %s", type(error).__name__)
        return False
    if chunked:
        return received < wanted
    return received == length


def _discard(stream: InputStream, wanted: int) -> int:
    received = 0
    while received < wanted:
        chunk = stream.read(min(_CHUNK, wanted - received))
        if not chunk:
            break
        received += len(chunk)
    return received


def _content_length(value: object) -> int | None:
    """The declared body length; 0 when absent, ``None`` when unparseable."""
    if value is None or value == "":
        return 0
    text = str(value).strip()
    return int(text) if text.isdigit() and text.isascii() else None


def _plain(
    kind: type[webob.exc.HTTPException], reason: str, *, reason_phrase: bool = False
) -> webob.exc.HTTPException:
    # Control characters could forge lines in the client's terminal, and the
    # status line additionally must be ASCII without CR/LF (header injection).
    body = _CONTROL.sub("?", reason)[:_MAX_REASON]
    response = kind(body=(body + "\n").encode("utf-8"), content_type="text/plain",
                    charset="UTF-8")
    phrase = _UNPRINTABLE.sub("?", reason)[:_MAX_REASON].strip()
    if reason_phrase and len(phrase) > 1:  # shorter is no reason (and upsets WSGI lint)
        response.status = f"{response.status_code} {phrase}"
    return response
