"""The WSGI middleware: identify, classify, throttle, verify, authorize, then pass through.

Wrap any WSGI app; it is called only for requests the authorizer allows,
with ``REMOTE_USER`` and ``singlemalt.*`` environ keys set, and its response
iterable is returned untouched (never buffered, so clones stream)::

    from singlemalt import SingleMalt, Verifier, HtpasswdStore, classify_git

    app = SingleMalt(
        git_app,
        classify=classify_git,
        verifier=Verifier(HtpasswdStore("/etc/hostd/htpasswd")),
        authorize=my_authorizer,
        realm="hostd",
        proxy=ProxyTrust(["127.0.0.1"]),
    )

Everything else is answered here: 400 for requests the classifier refuses,
401 with a Basic challenge for anonymous requests that are not allowed and
for wrong credentials, 403 with a reason when the user may know the
repository exists, 404 when they may not, and 429 while a client or
username is locked out after failed logins, and 503 with ``Retry-After``
when the credential store or the authorizer raises
:class:`~singlemalt.authorize.Unavailable` (cannot decide now; not a failed
login).  One log line per request
records the decision and its reason, never a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import webob.exc

from singlemalt import challenge
from singlemalt.authorize import Allowed, Authorizer
from singlemalt.credentials import BasicCredentials, Credentials, parse_authorization
from singlemalt.identity import REMOTE_USER, Identity, Scope
from singlemalt.judge import Outcome, judge
from singlemalt.proxy import NO_PROXIES, Client, ProxyTrust
from singlemalt.signin import SignInFailure, check_credentials
from singlemalt.target import Action, Classifier, Malformed, Target
from singlemalt.throttle import LoginThrottle
from singlemalt.verify import Verifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# The realm is sent inside a quoted string; refuse what would need escaping.
_REALM = re.compile(r'[\x20-\x7e]+')


class _Refusal(Exception):
    """Internal: the answer to a refused request, and what it was (for the body drain)."""

    def __init__(self, response: webob.exc.HTTPException, target: Target | None) -> None:
        super().__init__(response.status)
        self.response = response
        self.target = target


@dataclass(frozen=True, slots=True)
class _Request:
    """What is known about the request being decided, for the log line."""

    client: Client
    user: str | None
    target: Target | None = None


class SingleMalt:
    """Authentication and authorization in front of a WSGI app.

    ``classify`` names the repository and action of a request, ``verifier``
    checks credentials, ``authorize`` decides.  ``throttle`` (optional) locks
    out clients and usernames after repeated failed logins.  ``proxy`` says
    which peers' ``X-Forwarded-*`` headers to believe (none by default).
    ``trust_remote_user`` accepts a ``REMOTE_USER`` set by the server in
    front as an already authenticated user; otherwise any incoming
    ``REMOTE_USER`` is removed.  ``drain_limit`` bounds how much of a request
    body is read before an early reply; ``write_drain_limit`` (at least
    ``drain_limit``, the same by default) replaces it when the refused request
    was classified as a write.  Set it to the largest push you accept: hg
    sends its whole bundle before it reads the answer, so a refusal that
    closes the connection earlier reaches it as a TLS EOF instead of the 401
    that makes it ask for a password.  Reads (and malformed requests) keep
    the small limit, so a stranger cannot make a worker read much for a
    clone.  Neither limit bounds the drain in time: a client that stops
    sending holds the thread until the server's socket timeout or the proxy
    in front (which should cut request bodies that stop progressing).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        classify: Classifier,
        verifier: Verifier,
        authorize: Authorizer,
        realm: str = "singlemalt",
        throttle: LoginThrottle | None = None,
        proxy: ProxyTrust = NO_PROXIES,
        trust_remote_user: bool = False,
        drain_limit: int = challenge.DEFAULT_DRAIN_LIMIT,
        write_drain_limit: int | None = None,
    ) -> None:
        if not _REALM.fullmatch(realm) or '"' in realm or "\\" in realm:
            raise ValueError(f"realm must be printable ASCII without quotes: {realm!r}")
        if drain_limit < 0:
            raise ValueError("drain_limit must not be negative")
        if write_drain_limit is not None and write_drain_limit < drain_limit:
            raise ValueError("write_drain_limit must not be below drain_limit")
        self.app = app
        self.classify = classify
        self.verifier = verifier
        self.authorize = authorize
        self.realm = realm
        self.throttle = throttle
        self.proxy = proxy
        self.trust_remote_user = trust_remote_user
        self.drain_limit = drain_limit
        self.write_drain_limit = drain_limit if write_drain_limit is None else write_drain_limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Decide, then either call the app untouched or answer the refusal."""
        try:
            identity, target, decision = self._decide(environ)
        except _Refusal as refusal:
            write = refusal.target is not None and refusal.target.action is Action.WRITE
            limit = self.write_drain_limit if write else self.drain_limit
            return challenge.reply(environ, start_response, refusal.response, drain_limit=limit)
        if identity is not None:
            environ["REMOTE_USER"] = identity.username
        environ["singlemalt.identity"] = identity
        environ["singlemalt.target"] = target
        environ["singlemalt.decision"] = decision
        return self.app(environ, start_response)

    def _decide(self, environ: WSGIEnvironment) -> tuple[Identity | None, Target, Allowed]:
        """Run every check; return what an allowed request needs, or raise the refusal."""
        client = self._apply_proxy(environ)
        remote_user = environ.pop("REMOTE_USER", None)
        header = environ.get("HTTP_AUTHORIZATION")
        credentials = parse_authorization(header)
        claimed = credentials.username if isinstance(credentials, BasicCredentials) else None
        request = _Request(client, remote_user if self.trust_remote_user else claimed)

        target = self.classify(environ)
        if isinstance(target, Malformed):
            self._refuse(request, "malformed", target.reason, challenge.bad_request(target.reason))
        request = _Request(client, request.user, target)

        identity: Identity | None = None
        if self.trust_remote_user and remote_user:
            identity = Identity(str(remote_user), REMOTE_USER, Scope.WRITE)
        elif credentials is not None:
            identity = self._verify(request, credentials)
        elif header is not None and str(header).strip():
            # Not a failed login (nothing was checked), but not anonymous
            # either: ask again rather than guess what the client meant.
            self._refuse(request, "challenge", "unusable Authorization header",
                         challenge.unauthorized(self.realm))
        if identity is not None:
            request = _Request(client, identity.username, target)
        return identity, target, self._enforce(request, identity, target)

    def _enforce(self, request: _Request, identity: Identity | None, target: Target) -> Allowed:
        """Ask the authorizer (:func:`~singlemalt.judge.judge`) and refuse what is not allowed."""
        verdict = judge(self.authorize, identity, target)
        if verdict.decision is not None:
            _log_decision(request, verdict.outcome.value, verdict.reason)
            return verdict.decision
        if verdict.outcome is Outcome.UNAVAILABLE:
            self._refuse(request, verdict.outcome.value, verdict.reason,
                         challenge.unavailable(verdict.message, verdict.retry_after or 1), level=logging.WARNING)
        if verdict.outcome is Outcome.CHALLENGE:
            response = challenge.unauthorized(self.realm)
        elif verdict.outcome is Outcome.FORBIDDEN:
            response = challenge.forbidden(verdict.message)
        else:
            response = challenge.not_found()
        self._refuse(request, verdict.outcome.value, verdict.reason, response)

    def _verify(self, request: _Request, credentials: Credentials) -> Identity:
        """Check credentials behind the throttle (:func:`~singlemalt.signin.check_credentials`); 429, 503 or 401."""
        result = check_credentials(self.verifier, credentials, address=request.client.address,
                                   throttle=self.throttle)
        if isinstance(result, Identity):
            return result
        if result.failure is SignInFailure.INVALID:
            self._refuse(request, "challenge", result.reason, challenge.unauthorized(self.realm))
        retry_after = result.retry_after or 1
        if result.failure is SignInFailure.UNAVAILABLE:
            # Nothing was decided: not a failed login, and not a success.
            self._refuse(request, Outcome.UNAVAILABLE.value, result.reason,
                         challenge.unavailable(result.reason, retry_after), level=logging.WARNING)
        self._refuse(request, "throttled", result.reason,
                     challenge.too_many_requests(retry_after, result.reason), level=logging.WARNING)

    def _apply_proxy(self, environ: WSGIEnvironment) -> Client:
        """Replace the peer address and scheme with the client's, like Werkzeug's ProxyFix."""
        client = self.proxy.client(environ)
        environ["singlemalt.orig"] = {
            "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme"),
        }
        environ["REMOTE_ADDR"] = client.address
        environ["wsgi.url_scheme"] = client.scheme
        return client

    @staticmethod
    def _refuse(
        request: _Request,
        outcome: str,
        reason: str,
        response: webob.exc.HTTPException,
        *,
        level: int = logging.INFO,
    ) -> NoReturn:
        _log_decision(request, outcome, reason, level=level)
        raise _Refusal(response, request.target)


def _log_decision(request: _Request, outcome: str, reason: str, *, level: int = logging.INFO) -> None:
    target = request.target
    log.log(
        level,
        "%s user=%r client=%s repository=%r action=%s operation=%s reason=%r",
        outcome,
        request.user,
        request.client.address,
        target.repository if target else None,
        target.action.value if target else None,
        target.operation if target else None,
        reason,
    )
