"""A file's bytes, served so that they can never run in the site's origin.

Anyone who can push chooses these bytes, and they are served from the
site's own origin, where a page that ran script could act as its visitor.
So whatever the file is:

- the type is ``text/plain; charset=utf-8`` (UTF-8 text without NUL) or
  ``application/octet-stream`` (anything else, with
  ``Content-Disposition: attachment``): never ``text/html``, never
  ``image/svg+xml``, never a type taken from the file name;
- ``X-Content-Type-Options: nosniff``, so no browser guesses another type;
- ``Content-Security-Policy: sandbox`` with ``default-src 'none'``: even a
  document rendered anyway gets a unique opaque origin, no script, no
  plugin, no form, and loads nothing;
- ``Cross-Origin-Resource-Policy: same-origin``: other sites cannot embed it.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from webob import Response

from hostd.web.render import secure
from hostd.web.repo.model import is_binary

RAW_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
_UNSAFE = re.compile(rb"[^A-Za-z0-9._-]")


def is_text(data: bytes) -> bool:
    """UTF-8 without NUL: served as text/plain."""
    if is_binary(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def disposition(name: bytes) -> str:
    """``attachment`` with the file's name: ASCII-safe, and exact in RFC 6266's ``filename*``."""
    fallback = _UNSAFE.sub(b"_", name).decode("ascii") or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def raw_response(name: bytes, data: bytes, *, text: bool) -> Response:
    """The response for a file called ``name`` (its last path segment) holding ``data``."""
    if text:
        response = Response(body=data, content_type="text/plain", charset="utf-8")
    else:
        response = Response(body=data, content_type="application/octet-stream")
        response.headers["Content-Disposition"] = disposition(name)
    response.headers["Content-Security-Policy"] = RAW_POLICY
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return secure(response)
