"""A signed-in user's settings: their access tokens and their SSH keys.

``/settings/tokens`` lists the user's tokens (never a secret), creates one
(a label and a scope; the token is shown once, on the page the form redirects
to, never again and never logged) and revokes one.
``/settings/keys`` lists, adds (checked as ``hostd key add`` checks a key:
:func:`~hostd.store.keys.parse_public_key`) and removes SSH keys. Every
form's CSRF token is checked by :class:`~hostd.web.session.SessionAuth`;
singlemalt sends anonymous visitors to the sign-in form first
(:class:`~hostd.web.classify.WebPolicy`)::

    SettingsPages(tokens=UserTokens(accounts), keys=Keys(db), renderer=renderer).routes()
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from webob import Response, exc

from hostd.store.accounts import AccountError
from hostd.store.keys import MAX_TITLE, KeyRecord, Keys, parse_public_key
from hostd.store.usertokens import MAX_LABEL, UserTokens
from hostd.web.render import PageError, Renderer
from hostd.web.router import Route, route
from hostd.web.session import site_cookie
from hostd.web.visit import Visit
from singlemalt import Identity, IssuedToken, Scope, parse_token
from singlemalt.identity import TOKEN

log = logging.getLogger(__name__)

TOKENS: Final = "/settings/tokens"
#: Carries a new token from the form's post to the page that shows it (once).
NEW_TOKEN_COOKIE: Final = "__Host-hostd_new_token"
MINUTE: Final = 60
KEYS: Final = "/settings/keys"


class SettingsPages:
    """``/settings/tokens`` and ``/settings/keys``."""

    def __init__(self, *, tokens: UserTokens, keys: Keys, renderer: Renderer) -> None:
        self.tokens = tokens
        self.keys = keys
        self.renderer = renderer

    def routes(self) -> list[Route]:
        """The settings pages and their forms."""
        return [
            route("GET", r"/settings/?", self.index),
            route("GET POST", TOKENS, self.token_page),
            route("POST", TOKENS + r"/(?P<token_id>[A-Za-z0-9_-]{12})/revoke", self.revoke_token),
            route("GET POST", KEYS, self.key_page),
            route("POST", KEYS + r"/(?P<key_id>[1-9][0-9]{0,17})/delete", self.delete_key),
        ]

    def index(self, visit: Visit) -> Response:
        """``/settings``: the first of them."""
        raise exc.HTTPSeeOther(location=visit.base_url + TOKENS)

    # -- tokens ----------------------------------------------------------------

    def token_page(self, visit: Visit) -> Response:
        """The user's tokens and the form for a new one; a POST creates it, and the page it
        redirects to shows it once."""
        user = _owner(visit)
        if visit.request.method != "POST":
            return self._shown_once(visit, user)
        form = visit.request.POST
        label = str(form.get("label", ""))
        scope = {"read": Scope.READ, "write": Scope.WRITE}.get(str(form.get("scope", "")))
        if scope is None:
            return self._tokens(visit, user, None, "Choose what the token may do: read, or read and write.", 400)
        try:
            issued = self.tokens.create(user, scope, label)
        except AccountError as error:
            return self._tokens(visit, user, None, str(error), 400)
        # Never the token: its id names it in the log.
        log.info("token %s (%s) created by user=%r", issued.token_id, scope.value, user)
        if "hostd.session" not in visit.request.environ:
            # A script with credentials (no browser, no cookie jar, no reload): the answer shows it.
            response = self._tokens(visit, user, issued, None, 200)
            response.cache_control = "no-store"
            return response
        # A browser: post, redirect, get. A reload of the page showing the token must
        # not post the form again (a second token). The token rides to that page in a
        # cookie that lives a minute, is sent to nothing else, and is removed there.
        response = exc.HTTPSeeOther(location=visit.base_url + TOKENS)
        # Strict: never sent with a request another site started.
        response.headers.add("Set-Cookie", site_cookie(NEW_TOKEN_COOKIE, issued.token, MINUTE, same_site="Strict"))
        response.cache_control = "no-store"
        raise response

    def _shown_once(self, visit: Visit, user: str) -> Response:
        """The tokens page; with the token just created, once (its cookie removed as it is shown)."""
        value = visit.request.cookies.get(NEW_TOKEN_COOKIE)
        parsed = parse_token(value) if value else None
        owned = parsed is not None and any(token.token_id == parsed[0] for token in self.tokens.for_user(user))
        issued = IssuedToken(parsed[0], str(value), "") if parsed is not None and owned else None
        response = self._tokens(visit, user, issued, None, 200)
        if value is not None:
            response.headers.add("Set-Cookie", site_cookie(NEW_TOKEN_COOKIE, "", 0, same_site="Strict"))
            # Security: the one response that holds the secret is kept by no cache.
            response.cache_control = "no-store"
        return response

    def revoke_token(self, visit: Visit, token_id: str) -> Response:
        """Revoke one of the user's tokens; someone else's id is "no such token"."""
        user = _owner(visit)
        if not self.tokens.revoke(user, token_id):
            raise PageError(404, "You have no such token.")
        log.info("token %s revoked by user=%r", token_id, user)
        raise exc.HTTPSeeOther(location=visit.base_url + TOKENS)

    def _tokens(self, visit: Visit, user: str, issued: IssuedToken | None, error: str | None,
                status: int) -> Response:
        return self.renderer.page(visit, "settings_tokens.html", title="Access tokens", status=status,
                                  tokens=self.tokens.for_user(user), issued=issued, error=error,
                                  max_label=MAX_LABEL, day=day)

    # -- SSH keys --------------------------------------------------------------

    def key_page(self, visit: Visit) -> Response:
        """The user's SSH keys and the form for another; a POST adds it."""
        user = _owner(visit)
        if visit.request.method != "POST":
            return self._keys(visit, user, None, 200)
        form = visit.request.POST
        try:
            key = parse_public_key(str(form.get("key", "")))
            # As the CLI: the key's comment is the title unless one is given (cut to fit, not refused).
            title = str(form.get("title", "")).strip() or key.comment[:MAX_TITLE]
            record = self.keys.add(user, key, title)
        except AccountError as error:  # KeyRejected too: the reason, in one line
            return self._keys(visit, user, str(error), 400)
        log.info("key %d %s added by user=%r", record.key_id, record.fingerprint, user)
        raise exc.HTTPSeeOther(location=visit.base_url + KEYS)

    def delete_key(self, visit: Visit, key_id: str) -> Response:
        """Remove one of the user's keys; someone else's (or a deploy key) is "no such key"."""
        user = _owner(visit)
        number = int(key_id)
        # Security: the user's own keys only (Keys.delete takes any id); a key never changes holder.
        if not any(record.key_id == number for record in self.keys.for_user(user)):
            raise PageError(404, "You have no such key.")
        deleted = self.keys.delete(number)
        if deleted is not None:
            log.info("key %d %s removed by user=%r", deleted.key_id, deleted.fingerprint, user)
        raise exc.HTTPSeeOther(location=visit.base_url + KEYS)

    def _keys(self, visit: Visit, user: str, error: str | None, status: int) -> Response:
        records: list[KeyRecord] = self.keys.for_user(user)
        return self.renderer.page(visit, "settings_keys.html", title="SSH keys", status=status, keys=records,
                                  error=error, max_title=MAX_TITLE, day=day)


def day(when: float | datetime) -> str:
    """A date as the settings pages show it (UTC): ``2025-01-31``."""
    moment = when if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _owner(visit: Visit) -> str:
    """The signed-in user whose settings these are; refused for a token.

    singlemalt lets no anonymous request through to here. Security: an access
    token (even one that may write) cannot see or change credentials: a leaked
    CI token must not mint tokens or add SSH keys that outlive its revocation.
    """
    identity = visit.request.environ.get("singlemalt.identity")
    if visit.user is None or not isinstance(identity, Identity):
        raise PageError(403, "Sign in to see your settings.")
    if identity.method == TOKEN:
        raise PageError(403, "An access token cannot manage tokens or keys: sign in with your password.")
    return visit.user
