"""Signing in with the form through the real stack: HAProxy, the web pool's gunicorn, PostgreSQL, memcached.

A client with a cookie jar, as a browser keeps cookies (the browser tests
with chromium are elsewhere): the form's CSRF cookie and token, the session
cookie over HTTPS, a token made on the settings page that git then uses,
and signing out.
"""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

from hostd.web.session import SESSION_COOKIE
from tests.e2e.stackfixture import Stack


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """Cookies kept across requests; redirects answered, not followed (headers by any case: HAProxy lowers them)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.jar = http.cookiejar.CookieJar()
        context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  urllib.request.HTTPSHandler(context=context), NoRedirects)

    def open(self, path: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Message, str]:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.stack.url(path), data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def csrf(self, page: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert found is not None, page
        return found.group(1)

    @property
    def cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value or "" for cookie in self.jar}


def test_sign_in_make_a_token_that_git_uses_and_sign_out(stack: Stack, tmp_path: Path) -> None:
    stack.add_user("sigrid", "sigrid's password")
    stack.hostd("repo", "create", "sigrid/notes", "--vcs", "git")
    browser = Browser(stack)

    status, headers, page = browser.open("/sigrid/notes")
    assert status == 303 and headers["Location"].endswith("/login?next=%2Fsigrid%2Fnotes")
    status, _, page = browser.open("/login?next=%2Fsigrid%2Fnotes")
    assert status == 200 and 'action="/login"' in page
    wrong = browser.open("/login", {"csrf": browser.csrf(page), "next": "/sigrid/notes",
                                    "username": "sigrid", "password": "nope"})
    assert wrong[0] == 401 and "Wrong username or password." in wrong[2] and "WWW-Authenticate" not in wrong[1]
    status, headers, _ = browser.open("/login", {"csrf": browser.csrf(wrong[2]), "next": "/sigrid/notes",
                                                 "username": "sigrid", "password": "sigrid's password"})
    assert status == 303 and headers["Location"] == stack.base + "/sigrid/notes"
    assert SESSION_COOKIE in browser.cookies
    assert stack.sql("SELECT username FROM web_sessions") == [("sigrid",)]

    status, _, home = browser.open("/")
    assert status == 200 and "Your repositories" in home and 'href="/sigrid/notes"' in home
    status, _, tokens = browser.open("/settings/tokens")
    assert status == 200
    status, headers, _ = browser.open("/settings/tokens", {"csrf": browser.csrf(tokens), "label": "laptop",
                                                           "scope": "write"})
    assert status == 303 and headers["Location"] == stack.base + "/settings/tokens"
    status, headers, made = browser.open("/settings/tokens")  # where the new token is shown, once
    token = re.search(r"smt_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}", made)
    assert status == 200 and token is not None and headers["Cache-Control"] == "no-store"
    assert token.group(0) not in browser.open("/settings/tokens")[2]
    clone = tmp_path / "notes"
    stack.clients.git("clone", "-q", stack.url("sigrid/notes.git", "sigrid", token.group(0)), str(clone))
    # A form from another site is refused, even with the right token.
    foreign = browser.open("/logout", {"csrf": browser.csrf(home)}, headers={"Origin": "https://evil.test"})
    assert foreign[0] == 403

    status, headers, _ = browser.open("/logout", {"csrf": browser.csrf(home)})
    assert status == 303 and SESSION_COOKIE not in browser.cookies
    assert stack.sql("SELECT count(*) FROM web_sessions") == [(0,)]
    assert "Sign in</a> to see your repositories" in browser.open("/")[2]
