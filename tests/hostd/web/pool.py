"""The web pool's whole WSGI stack for page tests: SessionAuth(BrowserRefusals(SingleMalt(web app))).

Real sessions in the test's PostgreSQL, the login throttle a test gives
(on a memcached of its own), WebTest's cookie jar as the browser (over https, so the
``Secure`` cookies are sent back), forms filled and submitted as a browser
would, with the CSRF token the page carries.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import webtest

from hostd.store.sessions import Sessions
from hostd.web.classify import WebPolicy, classify_web
from hostd.web.refusals import BrowserRefusals
from hostd.web.render import Renderer
from hostd.web.session import SessionAuth, page_refusals
from singlemalt import LoginThrottle, SingleMalt, Verifier
from tests.hostd.conftest import Site
from tests.hostd.web.conftest import BASE_URL, HASHER, web_app

SECRET = b"web-pool-test-secret-0123456789abcdef"


def pool_app(site: Site, throttle: LoginThrottle | None, verifier: Verifier | None = None) -> Any:
    """The pool's stack, as hostd.serve.wsgi.web_app composes it."""
    renderer = Renderer("hostd", BASE_URL)
    verifier = verifier or Verifier(site.accounts, hasher=HASHER)
    app = web_app(site, verifier=verifier, throttle=throttle)
    guarded = SingleMalt(app, classify=classify_web, verifier=verifier, authorize=WebPolicy(site.policy(None)),
                         realm="hostd", throttle=throttle, trust_remote_user=True)
    refusals = BrowserRefusals(guarded, renderer=renderer, base_url=BASE_URL)
    return SessionAuth(refusals, sessions=Sessions(site.accounts.db), secret=SECRET, base_url=BASE_URL,
                       refuse=page_refusals(renderer, BASE_URL), anonymous_paths=("/static/",))


def browser(site: Site, throttle: LoginThrottle | None = None, address: str | None = None,
            verifier: Verifier | None = None) -> webtest.TestApp:
    """A browser (cookies kept) at its own client address, talking to the pool over https."""
    address = address or f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    environ = {"wsgi.url_scheme": "https", "HTTP_HOST": "example.test", "REMOTE_ADDR": address}
    return webtest.TestApp(pool_app(site, throttle, verifier), extra_environ=environ, lint=True)


def sign_in(client: webtest.TestApp, username: str, password: str, *, next_path: str | None = None,
            status: int | str = 303) -> webtest.TestResponse:
    """Fill the sign-in form the site serves and submit it."""
    page = client.get("/login" if next_path is None else "/login?next=" + next_path)
    form = page.forms[0]
    form["username"] = username
    form["password"] = password
    return form.submit(status=status)


def cookies(client: webtest.TestApp) -> dict[str, str]:
    return {cookie.name: cookie.value or "" for cookie in client.cookiejar}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
