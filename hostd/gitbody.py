"""The git pool's request bodies: decoded, and bounded by the push size limit.

Request bodies are limited to ``HOSTD_MAX_PUSH_BYTES``, measured here
because only the worker sees a chunked body's length (git sends every push
over ``http.postBuffer``, 1 MiB, chunked, and HTTP/2 bodies have no length at
all). See ``hostd.gitapp`` for how a push over the limit is reported.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]

# A push over the limit is read (and dropped) up to this many times the limit,
# so the client gets to its report; past that the connection is closed.
_DRAIN_FACTOR = 2
_DRAIN_CHUNK = 1 << 16


def prepare_body(environ: WSGIEnviron) -> None:
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


def content_length(environ: WSGIEnviron) -> int:
    """The request's announced body length; 0 if none (chunked, HTTP/2) or garbage."""
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def mib(size: int) -> str:
    return f"{size / 2**20:.4g} MiB"


class RequestTooLarge(OSError):
    """The request body grew past the limit while it was being read.

    An ``OSError`` so that dulwich's receive-pack reports it as the pack's
    unpack status, the one place a git client shows a server's reason once
    the response has started.
    """


class BoundedBody:
    """``wsgi.input`` that raises :class:`RequestTooLarge` past ``limit`` bytes.

    Per request. ``refuse_pack`` says the announced length is already over
    the limit, so receive-pack need not store any of the pack. ``drain``
    reads the rest of the body without keeping it, up to ``_DRAIN_FACTOR``
    times the limit in all.
    """

    def __init__(self, raw: Any, limit: int, reason: str, *, refuse_pack: bool = False) -> None:
        self._raw = raw
        self.limit = limit
        self.reason = reason
        self.refuse_pack = refuse_pack
        self.received = 0
        self.exceeded = False

    def read(self, size: int = -1) -> bytes:
        if self.exceeded:
            raise RequestTooLarge(self.reason)
        want = self.limit - self.received + 1
        data: bytes = self._raw.read(want if size is None or size < 0 else min(size, want))
        self.received += len(data)
        if self.received > self.limit:
            self.exceeded = True
            raise RequestTooLarge(self.reason)
        return data

    def drain(self) -> bool:
        """Discard the rest of the body; whether it ended within the bound."""
        for _ in range(_DRAIN_FACTOR * self.limit // _DRAIN_CHUNK + 2):
            if self.received > _DRAIN_FACTOR * self.limit:
                break
            try:
                data = self._raw.read(_DRAIN_CHUNK)
            except Exception:  # the client is gone: there is nobody left to tell
                return False
            if not data:
                return True
            self.received += len(data)
        log.warning("request body still going after %s; the connection will be closed", mib(self.received))
        return False
