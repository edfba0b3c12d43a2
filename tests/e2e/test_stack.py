"""The stack as an operator and a first-time user meet it."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from hostd.ops import stack as stackmod
from tests.e2e.stackfixture import Stack


def _https(stack: Stack, path: str) -> tuple[int, Message, bytes]:
    context = ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))
    request = urllib.request.Request(stack.url(path))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return response.status, response.headers, response.read()


def test_web_pool_lists_public_repositories(stack: Stack) -> None:
    status, headers, body = _https(stack, "/")
    assert status == 200
    assert b"demo/hello" in body and b"demo/hello-hg" in body
    assert "max-age" in headers.get("Strict-Transport-Security", "")


def test_plain_http_redirects_to_https(stack: Stack) -> None:
    settings = stack.settings

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"http://{settings.bind}:{settings.ports.http}/demo/hello", timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 301
        assert error.headers["Location"] == f"https://{settings.bind}:{settings.ports.https}/demo/hello"
    else:
        raise AssertionError("plain HTTP was served")


def test_health_is_answered_without_credentials(stack: Stack) -> None:
    assert _https(stack, "/healthz")[0] == 200
    assert stackmod.health_problem(stack.settings) is None


def test_reload_keeps_serving(stack: Stack, tmp_path: Path) -> None:
    stackmod.reload_haproxy(stack.settings)
    assert (stack.settings.run_dir / "haproxy.state").read_text().startswith("1")
    stack.clients.git("clone", "-q", stack.url("demo/hello.git"), str(tmp_path / "c"))
    stackmod.wait_healthy(stack.settings, timeout=30)


def test_private_repository_page_is_invisible_to_others(stack: Stack) -> None:
    stack.add_user("wendy", "wendy password")
    stack.add_user("walt", "walt password")
    stack.hostd("repo", "create", "wendy/diary", "--vcs", "hg")
    assert stack.request("/wendy/diary", ("wendy", "wendy password"))[0] == 200
    assert stack.request("/wendy/diary", ("walt", "walt password"))[0] == 404
    assert stack.request("/wendy/nothing", ("walt", "walt password"))[0] == 404
    # Anonymous visitors are sent to the sign-in form, for a private page as for a missing one.
    private, missing = stack.request("/wendy/diary"), stack.request("/wendy/nothing")
    assert private[0] == missing[0] == 200
    assert b'action="/login"' in private[1] and b'action="/login"' in missing[1]
    assert stack.request("/demo/hello")[0] == 200
