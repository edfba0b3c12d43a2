"""HTML pages: Jinja2 templates, the site's security headers, and refusals rendered in one place.

Every page extends ``templates/base.html`` (the header: the site, the
signed-in user, a way home) and is sent with the same headers: a
Content-Security-Policy that allows no inline script or style and no
framing, ``nosniff``, and a same-origin referrer. Templates autoescape, and
an undefined name is an error rather than an empty string. A handler that
refuses raises :class:`PageError` (or a WebOb HTTP error); :meth:`Renderer.error`
turns either into the styled page with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from webob import Response

from hostd.web.visit import Visit, display

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: No script or style but the site's own files, no plugins, no framing, and
#: forms that post only to the site. Images may come from anywhere over
#: https (READMEs show badges); they cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class PageError(Exception):
    """A refusal raised by a handler: the status and the sentence the visitor reads."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def secure(response: Response, *, cache: str = "no-cache") -> Response:
    """Add the site's security headers (and a Cache-Control) to a response built elsewhere."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", cache)
    return response


def url_path(text: str) -> str:
    """Percent-encode a path for an ``href`` (``/`` kept): names may hold ``?``, ``#``, ``%``, spaces,
    or bytes that are not UTF-8 (surrogates, see :attr:`Visit.path`), sent back as they came."""
    return quote(text.encode("utf-8", "surrogateescape"), safe="/")


class Renderer:
    """The template environment, built once per process."""

    def __init__(self, site_name: str, base_url: str, templates: Path = TEMPLATES) -> None:
        self.site_name = site_name
        self.base_url = base_url
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["url_path"] = url_path
        self.env.filters["display"] = display
        self.env.globals["site_name"] = site_name

    def html(self, visit: Visit, template: str, *, title: str, **context: Any) -> str:
        """The page as text (for tests and caches of whole pages)."""
        return self.env.get_template(template).render(visit=visit, title=title, **context)

    def page(self, visit: Visit, template: str, *, title: str, status: int = 200, **context: Any) -> Response:
        """Render ``template`` as a page of the site."""
        # A name that is not UTF-8 left undisplayed becomes "?", never a 500.
        body = self.html(visit, template, title=title, **context).encode("utf-8", "replace")
        response = Response(body=body, status=status, content_type="text/html", charset="utf-8")
        return secure(response)

    def error(self, visit: Visit, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        """The page a refusal shows: its status, its reason, a way home."""
        response = self.page(visit, "error.html", title=_TITLES.get(status, "Error"), status=status,
                             message=message, code=status)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response


_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many attempts",
    503: "Unavailable",
}
