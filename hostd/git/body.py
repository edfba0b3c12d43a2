"""The git pool's request bodies: decoded, and bounded by size and by inflation.

Request bodies are limited to ``HOSTD_MAX_PUSH_BYTES``, measured here
because only the worker sees a chunked body's length (git sends every push
over ``http.postBuffer``, 1 MiB, chunked, and HTTP/2 bodies have no length at
all). See ``hostd.git.app`` for how a push over the limit is reported.

A compressed body is inflated as it is read, never ahead of its reader, and
refused once it inflates too much (:class:`Inflated`): a gzip body of 1 MiB
can stand for 1 GiB of request. The numbers, and why:

- git compresses an upload-pack request only when the whole request fits in
  ``http.postBuffer`` (1 MiB by default; larger ones are sent chunked and
  plain), so a gzipped request of a git client with default settings
  inflates to at most 1 MiB. Within that (:data:`RATIO_FREE`), any ratio is
  accepted, so no request git sends by default is ever refused for its ratio.
- past it, a body may inflate to at most :data:`RATIO` times the compressed
  bytes read so far. A negotiation is mostly ``have`` lines, hex object names
  that gzip about 2:1 (measured: 1.9-2.0:1 for 30 to 20,000 haves); ref names
  with a long common prefix (``want-ref refs/heads/feature/00001``) about
  16:1. A compression bomb is about 1000:1 (deflate's ceiling is 1032:1).
  50:1 is three times the most compressible request measured and twenty
  times below a bomb, which is refused at 1 MiB of output.
- a compressed upload-pack request inflates to at most
  :data:`COMPRESSED_REQUEST_LIMIT` (32 MiB) in all, for clients that raised
  ``http.postBuffer``: git's own ``http-backend`` holds up to
  ``GIT_HTTP_MAX_REQUEST_BUFFER`` (10 MiB by default) of a compressed
  upload-pack request, which at the 2-3:1 of hex lines inflates to 20-30 MiB.

Only ``gzip`` (and its alias ``x-gzip``) is decoded, as git's
``http-backend`` does; git never compresses pushes (only its fetch requests
are gzipped). Any other or a chained coding is refused, never passed on to
git as garbage.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

from webob import exc

from hostd.responses import text_error

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]

#: Inflated bytes of a compressed body before its ratio is checked.
RATIO_FREE = 1 << 20
#: The most a compressed body may inflate, relative to its compressed bytes.
RATIO = 50
#: The most a compressed upload-pack request may inflate to, in all.
COMPRESSED_REQUEST_LIMIT = 32 << 20

# A push over the limit is read (and dropped) up to this many times the limit,
# so the client gets to its report; past that the connection is closed.
_DRAIN_FACTOR = 2
_DRAIN_CHUNK = 1 << 16
_GZIP = frozenset({"gzip", "x-gzip"})
_IDENTITY = frozenset({"", "identity"})


def content_coding(environ: WSGIEnviron) -> str | None:
    """The body's ``Content-Encoding``: "gzip", "" (none), or None if it is not one we decode."""
    value = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if value in _IDENTITY:
        return ""
    return "gzip" if value in _GZIP else None


def prepare_body(environ: WSGIEnviron, coding: str) -> Any:
    """Hand the app a plain, decoded request body (``coding`` from :func:`content_coding`).

    gunicorn (like any WSGI server) removes the chunked transfer coding before
    the app reads ``wsgi.input``, but leaves the ``Transfer-Encoding`` header
    in the environ; dulwich would then try to de-chunk the body a second time
    and misread a push. Returns the decoded stream, also set as ``wsgi.input``.
    """
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ.pop("HTTP_CONTENT_ENCODING", None)
    if coding == "gzip":
        environ["wsgi.input"] = Inflated(environ["wsgi.input"])
        environ.pop("CONTENT_LENGTH", None)
    return environ["wsgi.input"]


def content_length(environ: WSGIEnviron) -> int:
    """The request's announced body length; 0 if none (chunked, HTTP/2) or garbage."""
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def mib(size: int) -> str:
    return f"{size / 2**20:.4g} MiB"


class BodyRefused(OSError):
    """The request body was refused while it was being read; ``status`` is the HTTP answer.

    An ``OSError`` so that dulwich's receive-pack reports it as the pack's
    unpack status, the one place a git client shows a server's reason once
    the response has started.
    """

    status = 400

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "the request body was refused"


def body_refusal(error: BodyRefused) -> exc.HTTPException:
    """The HTTP answer to a body refused while it was read: 413 (too large, a bomb) or 400 (corrupt)."""
    status = exc.HTTPRequestEntityTooLarge if error.status == 413 else exc.HTTPBadRequest
    return text_error(status, error.reason + ".")


class RequestTooLarge(BodyRefused):
    """The request body grew (or inflated) past a limit while it was being read."""

    status = 413


class MalformedBody(BodyRefused):
    """The body is not what its ``Content-Encoding`` says (corrupt, cut short, trailing data)."""


class Inflated:
    """A gzip body, inflated only as far as its reader asks, within :data:`RATIO`.

    Per request. Raises :class:`RequestTooLarge` once the output passes
    :data:`RATIO_FREE` and :data:`RATIO` times the compressed bytes consumed,
    :class:`MalformedBody` on anything that is not exactly one gzip member.
    """

    def __init__(self, raw: Any, *, ratio: int = RATIO, free: int = RATIO_FREE) -> None:
        self._raw = raw
        self._ratio = ratio
        self._free = free
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only
        self._pending = b""
        self.compressed = 0
        self.inflated = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_DRAIN_CHUNK), b""))
        if size == 0:
            return b""
        while not self._zlib.eof:
            if not self._pending:
                self._pending = self._raw.read(_DRAIN_CHUNK)
                self.compressed += len(self._pending)
                if not self._pending:
                    raise MalformedBody("the gzip-compressed request body is cut short")
            try:
                data = self._zlib.decompress(self._pending, size)
            except zlib.error:
                raise MalformedBody("the request body is not valid gzip") from None
            self._pending = self._zlib.unconsumed_tail
            self.inflated += len(data)
            consumed = self.compressed - len(self._pending)
            if self.inflated > self._free and self.inflated > self._ratio * consumed:
                # The security decision: output grows only in proportion to what the client sent.
                raise RequestTooLarge(
                    f"the gzip-compressed request body inflates more than {self._ratio} times"
                    f" (over {mib(self.inflated)} from {mib(consumed)})"
                )
            if data:
                return data
        if self._zlib.unused_data or self._raw.read(1):
            raise MalformedBody("the request body has data after the end of its gzip stream")
        return b""


class BoundedBody:
    """``wsgi.input`` that raises :class:`RequestTooLarge` past ``limit`` bytes.

    Per request. ``refuse_pack`` says the announced length is already over
    the limit, so receive-pack need not store any of the pack. ``refused`` is
    the error that ended the body (over the limit, a bomb, corrupt gzip), for
    the app to answer with. ``drain`` reads the rest of the body from
    ``source`` (the wire, not the decoder) without keeping it, up to
    ``_DRAIN_FACTOR`` times the limit in all.
    """

    def __init__(self, raw: Any, limit: int, reason: str, *, refuse_pack: bool = False,
                 source: Any = None) -> None:
        self._raw = raw
        self._source = raw if source is None else source
        self.limit = limit
        self.reason = reason
        self.refuse_pack = refuse_pack
        self.received = 0
        self.refused: BodyRefused | None = None
        self._drained: bool | None = None

    def read(self, size: int = -1) -> bytes:
        if self.refused is not None:
            raise self.refused
        want = self.limit - self.received + 1
        try:
            data: bytes = self._raw.read(want if size is None or size < 0 else min(size, want))
        except BodyRefused as error:
            self.refused = error
            self.reason = error.reason
            raise
        self.received += len(data)
        if self.received > self.limit:
            self.refused = RequestTooLarge(self.reason)
            raise self.refused
        return data

    def drain(self) -> bool:
        """Discard the rest of the body; whether it ended within the bound (once: later calls say the same)."""
        if self._drained is None:
            self._drained = self._drain()
        return self._drained

    def _drain(self) -> bool:
        for _ in range(_DRAIN_FACTOR * self.limit // _DRAIN_CHUNK + 2):
            if self.received > _DRAIN_FACTOR * self.limit:
                break
            try:
                data = self._source.read(_DRAIN_CHUNK)
            except Exception:  # the client is gone: there is nobody left to tell
                return False
            if not data:
                return True
            self.received += len(data)
        log.warning("request body still going after %s; the connection will be closed", mib(self.received))
        return False
