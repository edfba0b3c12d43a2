"""Signing in and out, and the home page; a user's settings are in :mod:`hostd.web.settings`.

``/login`` is a form. Its password is checked exactly as a Basic login's is
(:func:`singlemalt.check_credentials`, with the pool's verifier and login
throttle): the same lockouts and failure counts, so guessing through the
form costs what guessing through ``Authorization`` does. A success begins a
new session (:class:`~hostd.store.sessions.Sessions`; a new token each
time, so a session an attacker planted is never promoted) and goes to
``next``, which must be a path on this site. A failure shows the form again
with a 401 that has no ``WWW-Authenticate`` (no browser dialog).

``/logout`` (POST, its CSRF token checked by
:class:`~hostd.web.session.SessionAuth`) ends the session. ``/`` lists the
visitor's repositories, those shared with them and the public ones::

    pages = AccountPages(listings=Listings(db), sessions=Sessions(db), verifier=verifier,
                         throttle=throttle, renderer=renderer, settings=SettingsPages(...))
    WebApp([*pages.routes(), ...], renderer=renderer, base_url=base_url)
"""

from __future__ import annotations

import logging
import math
from typing import Final
from urllib.parse import quote, urlsplit

from webob import Response, exc

from hostd.store.accounts import AccountError, Accounts
from hostd.store.keys import Keys
from hostd.store.listings import Listings
from hostd.store.sessions import Sessions
from hostd.store.usertokens import UserTokens
from hostd.web.render import Renderer
from hostd.web.router import Route, route
from hostd.web.session import Session, csrf_cookie, expired_session_cookie, new_cookie_value, session_cookie
from hostd.web.settings import SettingsPages
from hostd.web.visit import Visit
from singlemalt import (
    BasicCredentials,
    LoginThrottle,
    SignInFailure,
    SignInRefused,
    Verifier,
    check_credentials,
    parse_token,
)

log = logging.getLogger(__name__)

WRONG: Final = "Wrong username or password."
#: Longer input is no account of ours (hostd.store.accounts refuses such passwords); answered unchecked.
MAX_USERNAME: Final = 200
MAX_PASSWORD: Final = 1024
_URL_SAFE: Final = "/?#[]@!$&'()*+,;=:%~-._"


def local_path(text: object) -> str:
    """``text`` if it is a path on this site (``/...``), else ``/``: where a sign-in may go afterwards.

    Security: anything a browser could read as another site's address goes
    home instead (an open redirect would let a link to our sign-in page send
    people to a lookalike): not starting with exactly one ``/``
    (``//evil.test`` is scheme-relative), a backslash (browsers read ``/\\``
    as ``//``), control characters (browsers drop tabs and newlines, so
    ``/\\t/evil.test`` is ``//evil.test``), or a scheme or host.
    """
    if not isinstance(text, str) or len(text) > 2048 or not text.startswith("/") or text.startswith("//"):
        return "/"
    if "\\" in text or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        return "/"
    parts = urlsplit(text)
    if parts.scheme or parts.netloc:
        return "/"
    # A Location header is ASCII: what is not (a UTF-8 name) is percent-encoded.
    return quote(text, safe=_URL_SAFE)


class AccountPages:
    """``/``, ``/login``, ``/logout``, and the settings pages."""

    def __init__(
        self,
        *,
        listings: Listings,
        sessions: Sessions,
        verifier: Verifier,
        throttle: LoginThrottle | None,
        renderer: Renderer,
        settings: SettingsPages,
    ) -> None:
        self.listings = listings
        self.sessions = sessions
        self.verifier = verifier
        self.throttle = throttle
        self.renderer = renderer
        self.settings = settings

    def routes(self) -> list[Route]:
        """Every route of these pages, the settings' included."""
        return [
            route("GET", r"/", self.home),
            route("GET POST", r"/login", self.login),
            route("POST", r"/logout", self.logout),
            *self.settings.routes(),
        ]

    def home(self, visit: Visit) -> Response:
        """The visitor's repositories, those shared with them, and the public ones."""
        return self.renderer.page(visit, "index.html", title="Repositories", home=self.listings.home(visit.user))

    def login(self, visit: Visit) -> Response:
        """The sign-in form (GET), or checking it (POST)."""
        request = visit.request
        if request.method != "POST":
            target = local_path(request.GET.get("next", "/"))
            if visit.user is not None:
                raise exc.HTTPSeeOther(location=visit.base_url + target)
            return self._form(visit, target, "", None, 200)
        form = request.POST
        target = local_path(form.get("next", "/"))
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        if not username or not password:
            return self._form(visit, target, username, "Enter your username and password.", 400)
        if parse_token(password) is not None:
            # Security: a token is for a script, and may be read-only; a session
            # made from it would hold the whole account (new tokens, SSH keys).
            return self._form(visit, target, username, "That is an access token: tokens are for git, hg and"
                              " scripts. Sign in with your password.", 400)
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            return self._form(visit, target, username, WRONG, 401)
        result = check_credentials(self.verifier, BasicCredentials(username, password),
                                   address=str(request.remote_addr), throttle=self.throttle)
        if isinstance(result, SignInRefused):
            # As singlemalt logs a refused Basic login: the name tried, never the password.
            log.info("sign-in refused user=%r client=%s: %s", username, request.remote_addr, result.failure.value)
            return self._refused(visit, target, username, result)
        try:
            token = self.sessions.create(result.username)
        except AccountError:  # deleted, or its password removed, since the check
            return self._form(visit, target, username, WRONG, 401)
        previous = request.environ.get("hostd.session")
        if isinstance(previous, Session):
            self.sessions.delete(previous.token)
        log.info("signed in user=%r client=%s", result.username, request.remote_addr)
        response = exc.HTTPSeeOther(location=visit.base_url + target)
        response.headers.add("Set-Cookie", session_cookie(token, self.sessions.absolute))
        # A new CSRF cookie too: the one the form was posted with is not kept.
        response.headers.add("Set-Cookie", csrf_cookie(new_cookie_value()))
        response.cache_control = "no-store"
        return response

    def logout(self, visit: Visit) -> Response:
        """End this browser's session and go home."""
        session = visit.request.environ.get("hostd.session")
        if isinstance(session, Session):
            self.sessions.delete(session.token)
            log.info("signed out user=%r", session.username)
        response = exc.HTTPSeeOther(location=visit.base_url + "/")
        response.headers.add("Set-Cookie", expired_session_cookie())
        response.cache_control = "no-store"
        return response

    def _refused(self, visit: Visit, target: str, username: str, refused: SignInRefused) -> Response:
        """The form again, saying why; 401, 429 or 503 with ``Retry-After``."""
        if refused.failure is SignInFailure.INVALID:
            return self._form(visit, target, username, WRONG, 401)
        retry = refused.retry_after or 1
        if refused.failure is SignInFailure.LOCKED:
            minutes = math.ceil(retry / 60)
            message = (f"Too many failed sign-ins for this account from your address. Try again in {minutes}"
                       f" minute{'s' if minutes != 1 else ''}.")
            status = 429
        elif refused.failure is SignInFailure.BUSY:
            message, status = "Too many sign-ins from your address. Try again in a few seconds.", 429
        else:
            message, status = f"Signing in is not possible right now: {refused.reason}", 503
        response = self._form(visit, target, username, message, status)
        response.headers["Retry-After"] = str(retry)
        return response

    def _form(self, visit: Visit, target: str, username: str, error: str | None, status: int) -> Response:
        response = self.renderer.page(visit, "login.html", title="Sign in", status=status, next=target,
                                      username=username, error=error)
        response.cache_control = "no-store"
        return response


def account_pages(accounts: Accounts, sessions: Sessions, verifier: Verifier, throttle: LoginThrottle | None,
                  renderer: Renderer) -> AccountPages:
    """The sign-in, home and settings pages over one installation's database."""
    settings = SettingsPages(tokens=UserTokens(accounts), keys=Keys(accounts.db), renderer=renderer)
    return AccountPages(listings=Listings(accounts.db), sessions=sessions, verifier=verifier, throttle=throttle,
                        renderer=renderer, settings=settings)
