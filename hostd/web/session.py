"""Browser sessions and CSRF for the web pool: who a browser is signed in as, and that its forms are ours.

:class:`SessionAuth` is the web pool's outermost middleware (inside the
health routes), in front of singlemalt, which runs with
``trust_remote_user=True``::

    app = SessionAuth(BrowserRefusals(SingleMalt(web, ..., trust_remote_user=True), ...),
                      sessions=Sessions(db), secret=secret_bytes, base_url="https://git.example.com",
                      refuse=page_refusals(renderer, base_url), anonymous_paths=("/static/",))

Per request it:

- removes any incoming ``REMOTE_USER``: only a session may set it;
- for a request with an ``Authorization`` header (a script, with Basic or a
  token) does nothing more: singlemalt checks the credentials, a session
  cookie sent along is ignored, and no CSRF token is needed (see
  :meth:`SessionAuth.__call__` for why, and for the one check they do get);
- looks the session cookie up (:class:`~hostd.store.sessions.Sessions`) and,
  for a live one, sets ``REMOTE_USER`` and ``environ["hostd.session"]``;
- sets ``environ["hostd.csrf"]``, the token every form of the page carries:
  HMAC(secret, session token) when signed in; for an anonymous visitor (the
  sign-in form) HMAC(secret, a random value) whose value is the
  ``__Host-hostd_csrf`` cookie (a double-submit cookie, signed);
- refuses every request but GET and HEAD whose ``csrf`` form field is not
  that token (403), or that a browser says came from another site
  (``Origin``, ``Sec-Fetch-Site``), or whose form is too large (413).

Every refusal goes through one ``refuse`` callable: the site's error page in
the pool (:func:`page_refusals`), plain text by default. While the database
is unreachable, a request with a session cookie is a 503 saying so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

from webob import Request, Response

from hostd.store.database import DatabaseUnavailable
from hostd.store.sessions import ABSOLUTE
from hostd.web.render import Renderer
from hostd.web.visit import Visit

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: ``__Host-``: the browser keeps it only if it is Secure, has Path=/ and no
#: Domain, so neither a sibling subdomain nor a plain-HTTP page can set it.
SESSION_COOKIE: Final = "__Host-hostd_session"
CSRF_COOKIE: Final = "__Host-hostd_csrf"
#: Methods that change nothing; every other one is checked.
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
#: The largest form read (an SSH key of 16384 bits is under 3 KiB).
MAX_FORM_BYTES: Final = 64 * 1024
UNAVAILABLE: Final = "hostd's database is unavailable; try again shortly."
_VALUE: Final = re.compile(r"[A-Za-z0-9_-]{43}")

#: Renders a refusal: (environ, status, sentence) -> the response.
Refuse = Callable[["WSGIEnvironment", int, str], Response]


class SessionLookup(Protocol):
    """Who a session token is signed in as (:meth:`hostd.store.sessions.Sessions.lookup`)."""

    def lookup(self, token: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """The live session a request carries (``environ["hostd.session"]``); the token never in a repr."""

    username: str
    token: str = field(repr=False)


class Csrf:
    """The CSRF tokens of forms, keyed by a key derived from the installation's secret."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own: a CSRF token is never also a valid MAC of anything else.
        self._key = hmac.new(secret, b"hostd web csrf v1", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "<Csrf>"

    def for_session(self, token: str) -> str:
        """The token of a signed-in visitor's forms: it changes with each session."""
        return self._mac(b"session\0" + token.encode("ascii"))

    def for_cookie(self, value: str) -> str:
        """The token of an anonymous visitor's forms (the sign-in form), bound to their CSRF cookie."""
        return self._mac(b"anonymous\0" + value.encode("ascii"))

    def _mac(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def new_cookie_value() -> str:
    """A random CSRF cookie value: 256 bits, url-safe base64, 43 characters."""
    return secrets.token_urlsafe(32)


def site_cookie(name: str, value: str, max_age: int | None, *, same_site: str = "Lax") -> str:
    """A ``Set-Cookie`` value for the whole site, never readable by a page's script (``None``: until the
    browser closes)."""
    # Lax: sent on a top-level GET from another site (following a link in, still
    # signed in), never on another site's POST; the CSRF token is the main guard.
    attributes = f"{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}"
    return attributes if max_age is None else f"{attributes}; Max-Age={max_age}"


def session_cookie(token: str, lifetime: timedelta = ABSOLUTE) -> str:
    """The ``Set-Cookie`` value that signs a browser in, kept no longer than the session can live."""
    return site_cookie(SESSION_COOKIE, token, int(lifetime.total_seconds()))


def expired_session_cookie() -> str:
    """The ``Set-Cookie`` value that removes the session cookie (signing out, or a session that ended)."""
    return site_cookie(SESSION_COOKIE, "", 0)


def csrf_cookie(value: str) -> str:
    """The ``Set-Cookie`` value of an anonymous visitor's CSRF cookie (kept until the browser closes)."""
    return site_cookie(CSRF_COOKIE, value, None)


def text_refusal(environ: WSGIEnvironment, status: int, message: str) -> Response:
    """A refusal as one line of plain text (the default; the pool renders pages, :func:`page_refusals`)."""
    del environ
    return Response(body=(message + "\n").encode("utf-8"), status=status, content_type="text/plain",
                    charset="utf-8")


def page_refusals(renderer: Renderer, base_url: str) -> Refuse:
    """Refusals as the site's error page, as :class:`~hostd.web.refusals.BrowserRefusals` renders singlemalt's."""
    def refuse(environ: WSGIEnvironment, status: int, message: str) -> Response:
        visit = Visit(Request(environ), environ.get("REMOTE_USER"), str(environ.get("hostd.csrf", "")), base_url)
        return renderer.error(visit, status, message)
    return refuse


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as a browser's ``Origin`` header spells it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class SessionAuth:
    """Sessions from cookies, and CSRF checks, in front of singlemalt (see the module's docstring).

    ``base_url`` is the site's address: a browser's ``Origin`` must be its
    origin (or the same scheme with the ``Host`` the request was sent to).
    ``anonymous_paths`` are path prefixes served alike to everyone (the
    static files): no session is looked up and no CSRF cookie is set for them.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        sessions: SessionLookup,
        secret: bytes,
        base_url: str,
        refuse: Refuse = text_refusal,
        anonymous_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.csrf = Csrf(secret)
        self.origin = origin_of(base_url)
        self.scheme = urlsplit(base_url).scheme
        self.refuse = refuse
        self.anonymous_paths = anonymous_paths

    def __repr__(self) -> str:
        return f"<SessionAuth origin={self.origin!r}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Set who is signed in and the page's CSRF token; refuse forms that are not the site's own."""
        # Security: REMOTE_USER is trusted by singlemalt here; only a session sets it.
        environ.pop("REMOTE_USER", None)
        environ.pop("hostd.session", None)
        environ["hostd.csrf"] = ""
        unsafe = environ.get("REQUEST_METHOD", "GET") not in SAFE_METHODS
        foreign = self._cross_site(environ) if unsafe else None
        if foreign is not None:
            # Before anything else, scripts included: a browser that cached Basic
            # credentials (a git URL once asked it for them) sends them on another
            # site's form too, and it always says where such a form came from.
            return self._refused(environ, start_response, 403, foreign, [])
        if str(environ.get("HTTP_AUTHORIZATION", "")).strip():
            # Security: a script's own credentials, checked by singlemalt. No CSRF
            # token: another site cannot make a browser send a Bearer token or
            # Basic credentials it does not have (a page's script would need a
            # CORS preflight, which nothing here allows), and the cookie is
            # ignored, so a forged request cannot borrow a session through it.
            return self.app(environ, start_response)
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(self.anonymous_paths):
            return self.app(environ, start_response)
        cookies = _cookies(environ)
        headers: list[tuple[str, str]] = []
        token = cookies.get(SESSION_COOKIE)
        user = None
        if token:
            try:
                user = self.sessions.lookup(token)
            except DatabaseUnavailable as error:
                log.warning("session of a %s %r not looked up: database unavailable: %s",
                            environ.get("REQUEST_METHOD"), path, error)
                return self._refused(environ, start_response, 503, UNAVAILABLE, [("Retry-After", "5")])
            if user is None:
                headers.append(("Set-Cookie", expired_session_cookie()))
        if token and user is not None:
            environ["REMOTE_USER"] = user
            environ["hostd.session"] = Session(user, token)
            environ["hostd.csrf"] = self.csrf.for_session(token)
        else:
            value = cookies.get(CSRF_COOKIE, "")
            if not _VALUE.fullmatch(value):
                value = new_cookie_value()
                headers.append(("Set-Cookie", csrf_cookie(value)))
            environ["hostd.csrf"] = self.csrf.for_cookie(value)
        if unsafe:
            problem = _form_problem(environ, str(environ["hostd.csrf"]))
            if problem is not None:
                return self._refused(environ, start_response, problem[0], problem[1], headers)
        return self.app(environ, _adding(start_response, headers))

    def _cross_site(self, environ: WSGIEnvironment) -> str | None:
        """Why a browser's request came from another site's page, or None (scripts send neither header)."""
        fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
        # "same-site" too: a sibling subdomain may serve other people's pages.
        if fetch_site is not None and str(fetch_site).strip().lower() not in ("same-origin", "none"):
            return "Forms are accepted from this site's own pages only."
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return None
        own = {self.origin, f"{self.scheme}://{environ.get('HTTP_HOST', '')}".lower()}
        if str(origin).strip().lower() not in own:
            return "Forms are accepted from this site's own pages only."
        return None

    def _refused(self, environ: WSGIEnvironment, start_response: StartResponse, status: int, message: str,
                 headers: list[tuple[str, str]]) -> Iterable[bytes]:
        log.info("refused %s %r: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), message)
        response = self.refuse(environ, status, message)
        for name, value in headers:
            response.headers.add(name, value)
        response.cache_control = "no-store"
        return response(environ, start_response)  # type: ignore[no-any-return]


def _cookies(environ: WSGIEnvironment) -> Mapping[str, str]:
    """The request's cookies, parsed leniently (WebOb's parser): a malformed cookie of another
    application on the host costs only itself, never the session's."""
    cookies: Mapping[str, str] = Request(environ).cookies
    return cookies


def _form_problem(environ: WSGIEnvironment, expected: str) -> tuple[int, str] | None:
    """Why an unsafe request's form is refused (status, sentence), or None: its ``csrf`` field is ``expected``."""
    length = str(environ.get("CONTENT_LENGTH") or "0").strip()
    if not length.isdigit() or "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        return 411, "A form must be sent with its length."
    if int(length) > MAX_FORM_BYTES:
        return 413, f"This form is larger than {MAX_FORM_BYTES // 1024} KiB."
    try:
        sent = Request(environ).POST.get("csrf")
    except (ValueError, UnicodeDecodeError):
        return 400, "This form could not be read."
    if not isinstance(sent, str) or not sent:
        return 403, "This form carries no security token. Reload the page and try again."
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("ascii")):
        return 403, ("This form's security token does not match: the page is out of date, or the browser did"
                     " not send this site's cookies. Reload the page and try again.")
    return None


def _adding(start_response: StartResponse, headers: list[tuple[str, str]]) -> StartResponse:
    """``start_response`` with ``headers`` put before the app's own (a cookie the app sets then wins)."""
    if not headers:
        return start_response

    def start(status: str, response_headers: list[tuple[str, str]],
              exc_info: OptExcInfo | None = None) -> Callable[[bytes], object]:
        return start_response(status, [*headers, *response_headers], exc_info)

    return start
