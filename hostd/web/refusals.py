"""singlemalt's refusals, told the way a browser should hear them.

singlemalt answers a refused request for scripts and VCS clients: 401 with
a Basic challenge, 404, 403, 429 or 503 with a one-line reason. In a
browser a 401 pops the password dialog, for any mistyped URL. So, in the
web pool only:

- an anonymous visitor refused with 401 or 404 is sent to the sign-in form
  (``303 /login?next=...``). A private repository and a missing one are
  refused the same way by singlemalt, so they stay indistinguishable here;
- every other refusal is the site's error page, carrying singlemalt's reason
  and headers such as ``Retry-After``;
- a request with an ``Authorization`` header (a script using Basic or a
  token) gets singlemalt's answer untouched.

What the app itself answers passes through untouched: singlemalt marks an
allowed request (``singlemalt.decision``) before calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from webob import Request, Response

from hostd.web.render import Renderer
from hostd.web.visit import Visit

#: The most of a refusal's body kept for the page (singlemalt's reasons are one short line).
_MAX_REASON = 1024
_FOR_SIGN_IN = (401, 404)
_HEADERS_KEPT = ("Retry-After",)


def sign_in_location(request: Request) -> str:
    """``/login?next=<this page>``: a local path, so the form returns here."""
    # The path as the client sent it (percent-encoded again): a "%3F" in a name stays a "%3F".
    wanted = quote(str(request.environ.get("PATH_INFO") or "/").encode("latin-1", "replace"), safe="/")
    if request.query_string:
        wanted += "?" + request.query_string
    return "/login?" + urlencode({"next": wanted})


class BrowserRefusals:
    """Wrap singlemalt: browsers get pages and the sign-in form, scripts the plain answers."""

    def __init__(self, app: Any, *, renderer: Renderer, base_url: str) -> None:
        self.app = app
        self.renderer = renderer
        self.base_url = base_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        # Read before singlemalt removes it: the session's user, if any.
        user = environ.get("REMOTE_USER")
        held: list[tuple[str, list[tuple[str, str]]]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            if "singlemalt.decision" in environ:
                return start_response(status, headers, exc_info)  # type: ignore[no-any-return]
            held.append((status, headers))
            return lambda _data: None

        body = self.app(environ, hold)
        if not held:
            return body  # type: ignore[no-any-return]
        reason = _read(body)
        status, headers = held[-1]
        code = int(status.split(" ", 1)[0])
        request = Request(environ)
        if user is None and code in _FOR_SIGN_IN:
            response = Response(status=303, location=self.base_url + sign_in_location(request))
            response.cache_control = "no-store"
        else:
            visit = Visit(request, user, str(environ.get("hostd.csrf", "")), self.base_url)
            kept = {name: value for name, value in headers if name in _HEADERS_KEPT}
            response = self.renderer.error(visit, code, _sentence(code, reason), kept)
        return response(environ, start_response)  # type: ignore[no-any-return]


def _read(body: Iterable[bytes]) -> str:
    """A refusal's short text body (bounded), its iterable closed."""
    kept = b""
    try:
        for chunk in body:
            if len(kept) < _MAX_REASON:
                kept += chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return kept[:_MAX_REASON].decode("utf-8", "replace").strip()


def _sentence(code: int, reason: str) -> str:
    """singlemalt's reason as a sentence; a bare 404 says what a visitor can do."""
    if code == 404:
        return "There is no such page, or you do not have access to it."
    if not reason:
        return "The request was refused."
    return reason[0].upper() + reason[1:] + ("" if reason.endswith(".") else ".")
