"""XSS probes stay inert: markup in names, refs, commits, READMEs and raw files, in a real browser and in the HTML.

One stack for the module, with a public git and a public hg repository of
user ``mallory`` whose every name a page shows carries a probe
(tests/web/probes.py): file and directory names, branch, tag and bookmark
names, commit messages and author names, the README (raw HTML, scripts,
``javascript:`` links, event handlers) and raw ``.html`` and ``.svg`` files;
and a token label on the settings page.

Each page is checked three ways: in chromium (no probe ran: no marker, no
alert; no live markup in the DOM; no CSP violation in the console, which
would mean markup got through and only the CSP stopped it), and on the HTML
the server sent (no live markup, no probe verbatim). Without the escaping
or the README's sanitizing, the HTML checks fail even where the CSP would
have kept the browser safe; without the CSP, the browser checks fail too.
Raw files are checked for their headers: ``Content-Security-Policy:
sandbox``, ``nosniff``, and a type no browser renders as a document.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote, urlencode

import pytest
from selenium.webdriver.common.by import By

from hostd.web.render import CONTENT_SECURITY_POLICY
from tests.e2e.stackfixture import Stack
from tests.web import probes
from tests.web.browser import Browser, browsing, fetch, running_stack
from tests.web.forms import PASSWORD_FIELD, USER_FIELD, create_token, ensure_signed_in, sign_in_form, submit
from tests.web.seed import GitHistory, HgHistory

USER, PASSWORD = "mallory", "mallory-password-1"
GIT_REPO, HG_REPO = f"{USER}/probes", f"{USER}/probes-hg"
#: Files whose /raw/ a browser must never render as a document.
RAW_DOCUMENTS = ("probe.html", "probe.svg")
RENDERED_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml")

FILES: dict[str, bytes] = {
    "README.md": probes.README.encode(),
    f"{probes.IMG}.txt": b"a file named like an img tag\n",
    f"{probes.SVG_BREAKOUT}.md": f"# {probes.SVG_BREAKOUT}\n".encode(),
    f"{probes.QUOTE_BREAKOUT}.py": b"print('quote')\n",
    probes.JS_NAME: b"a file named javascript:...\n",
    f"{probes.SCRIPT_DIR}/script>": b"inside a directory named like a script tag\n",
    f"{probes.IMG}/inner.txt": b"inside a directory named like an img tag\n",
    "probe.html": probes.RAW_HTML.encode(),
    "probe.svg": probes.RAW_SVG.encode(),
    "src/app.py": f"# {probes.COMMIT_MESSAGE.splitlines()[0]}\nMARKUP = '{probes.IMG}'\n".encode(),
}


@dataclass(frozen=True)
class Seeded:
    """The commits of the probe repositories."""

    git_first: str
    git_evil_author: str
    hg_commit: str
    hg_branch_commit: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory, "xss-stack")


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    work = tmp_path_factory.mktemp("xss-work")
    stack.add_user(USER, PASSWORD)
    stack.hostd("repo", "create", GIT_REPO, "--vcs", "git", "--public")
    stack.hostd("repo", "create", HG_REPO, "--vcs", "hg", "--public")

    git = GitHistory(stack, work / "git")
    first = git.commit(probes.COMMIT_MESSAGE, FILES)
    evil_author = git.raw_commit(probes.COMMIT_MESSAGE, probes.GIT_AUTHOR)
    git.git("branch", probes.GIT_BRANCH)
    git.git("branch", probes.GIT_BRANCH_BREAKOUT, first)
    git.git("tag", "-a", "-m", probes.COMMIT_MESSAGE, probes.GIT_TAG)
    git.push(GIT_REPO)

    hg = HgHistory(stack, work / "hg")
    hg_commit = hg.commit(probes.COMMIT_MESSAGE, FILES, user=probes.HG_AUTHOR)
    hg.hg("bookmark", "--inactive", probes.HG_BOOKMARK)
    hg.hg("tag", "-u", probes.HG_AUTHOR, "-m", probes.COMMIT_MESSAGE, probes.HG_TAG)
    hg.hg("branch", probes.HG_BRANCH)
    hg_branch = hg.commit(probes.COMMIT_MESSAGE, {"on-branch.txt": b"x\n"}, user=probes.HG_AUTHOR)
    hg.push(HG_REPO)
    return Seeded(first, evil_author, hg_commit, hg_branch)


@pytest.fixture(scope="module")
def browser(stack: Stack, seeded: Seeded, request: pytest.FixtureRequest) -> Iterator[Browser]:
    del seeded
    yield from browsing(stack, request, "xss")


@pytest.fixture
def signed_in(browser: Browser) -> Browser:
    """The browser, signed in as mallory (through the form, when it is not yet)."""
    return ensure_signed_in(browser, USER, PASSWORD)


def _path(*parts: str) -> str:
    """A page path from its parts, each percent-encoded (``/`` kept: it separates ref and path components)."""
    return "/" + "/".join(quote(part, safe="/") for part in parts)


#: Every page to probe: (name, its path from the seeded commits).
PAGES: list[tuple[str, Callable[[Seeded], str]]] = [
    ("home", lambda s: "/"),
    ("git-repo", lambda s: _path(GIT_REPO)),
    ("git-tree-root", lambda s: _path(GIT_REPO, "tree", "main")),
    ("git-tree-script-dir", lambda s: _path(GIT_REPO, "tree", "main", probes.SCRIPT_DIR)),
    ("git-tree-img-dir", lambda s: _path(GIT_REPO, "tree", "main", probes.IMG)),
    ("git-blob-img-name", lambda s: _path(GIT_REPO, "blob", "main", f"{probes.IMG}.txt")),
    ("git-blob-breakout-name", lambda s: _path(GIT_REPO, "blob", "main", f"{probes.SVG_BREAKOUT}.md")),
    ("git-blob-quote-name", lambda s: _path(GIT_REPO, "blob", "main", f"{probes.QUOTE_BREAKOUT}.py")),
    ("git-blob-javascript-name", lambda s: _path(GIT_REPO, "blob", "main", probes.JS_NAME)),
    ("git-blob-in-script-dir", lambda s: _path(GIT_REPO, "blob", "main", probes.SCRIPT_DIR, "script>")),
    ("git-blob-html", lambda s: _path(GIT_REPO, "blob", "main", "probe.html")),
    ("git-blob-svg", lambda s: _path(GIT_REPO, "blob", "main", "probe.svg")),
    ("git-blob-readme", lambda s: _path(GIT_REPO, "blob", "main", "README.md")),
    ("git-blob-source", lambda s: _path(GIT_REPO, "blob", "main", "src/app.py")),
    ("git-raw-html", lambda s: _path(GIT_REPO, "raw", "main", "probe.html")),
    ("git-raw-svg", lambda s: _path(GIT_REPO, "raw", "main", "probe.svg")),
    ("git-raw-img-name", lambda s: _path(GIT_REPO, "raw", "main", f"{probes.IMG}.txt")),
    ("git-commits", lambda s: _path(GIT_REPO, "commits", "main")),
    ("git-commit", lambda s: _path(GIT_REPO, "commit", s.git_first)),
    ("git-commit-evil-author", lambda s: _path(GIT_REPO, "commit", s.git_evil_author)),
    ("git-branches", lambda s: _path(GIT_REPO, "branches")),
    ("git-tags", lambda s: _path(GIT_REPO, "tags")),
    ("git-tree-evil-branch", lambda s: _path(GIT_REPO, "tree", probes.GIT_BRANCH)),
    ("git-commits-breakout-branch", lambda s: _path(GIT_REPO, "commits", probes.GIT_BRANCH_BREAKOUT)),
    ("git-commits-evil-tag", lambda s: _path(GIT_REPO, "commits", probes.GIT_TAG)),
    ("git-blob-at-evil-tag", lambda s: _path(GIT_REPO, "blob", probes.GIT_TAG, f"{probes.IMG}.txt")),
    ("hg-repo", lambda s: _path(HG_REPO)),
    ("hg-tree-root", lambda s: _path(HG_REPO, "tree", "default")),
    ("hg-tree-script-dir", lambda s: _path(HG_REPO, "tree", "default", probes.SCRIPT_DIR)),
    ("hg-blob-img-name", lambda s: _path(HG_REPO, "blob", "default", f"{probes.IMG}.txt")),
    ("hg-blob-javascript-name", lambda s: _path(HG_REPO, "blob", "default", probes.JS_NAME)),
    ("hg-blob-readme", lambda s: _path(HG_REPO, "blob", "default", "README.md")),
    ("hg-raw-html", lambda s: _path(HG_REPO, "raw", "default", "probe.html")),
    ("hg-raw-svg", lambda s: _path(HG_REPO, "raw", "default", "probe.svg")),
    ("hg-commits", lambda s: _path(HG_REPO, "commits", "default")),
    ("hg-commit", lambda s: _path(HG_REPO, "commit", s.hg_commit)),
    ("hg-commit-on-evil-branch", lambda s: _path(HG_REPO, "commit", s.hg_branch_commit)),
    ("hg-branches", lambda s: _path(HG_REPO, "branches")),
    ("hg-tags", lambda s: _path(HG_REPO, "tags")),
    ("hg-bookmarks", lambda s: _path(HG_REPO, "bookmarks")),
    ("hg-tree-evil-bookmark", lambda s: _path(HG_REPO, "tree", probes.HG_BOOKMARK)),
    ("hg-commits-evil-branch", lambda s: _path(HG_REPO, "commits", probes.HG_BRANCH)),
    ("hg-commits-evil-tag", lambda s: _path(HG_REPO, "commits", probes.HG_TAG)),
]


def _media_type(headers: Message) -> str:
    return str(headers.get("Content-Type", "")).split(";", 1)[0].strip().lower()


@pytest.mark.parametrize(("name", "where"), PAGES, ids=[name for name, _ in PAGES])
def test_probes_stay_inert(stack: Stack, seeded: Seeded, signed_in: Browser, name: str,
                           where: Callable[[Seeded], str]) -> None:
    browser = signed_in
    path = where(seeded)
    reply = fetch(stack, path, headers=browser.cookie_header())
    assert reply.status == 200, f"{name}: {path} answered {reply.status}: {reply.text[:300]}"
    raw = "/raw/" in path
    if raw:
        assert_raw_is_never_a_document(name, reply.headers)
    else:
        assert _media_type(reply.headers) == "text/html", reply.headers
        assert probes.live_markup(reply.text) == [], f"{name}: live markup in the HTML of {path}"
        assert probes.unescaped(reply.text) == [], f"{name}: probes written verbatim into {path}"

    browser.visit(path, name)
    if raw:
        view = browser.script(probes.RAW_VIEW)
        assert isinstance(view, dict)
        assert view == {"type": "text/plain", "ran": False, "elements": ["pre"], "text": view["text"]}, (name, view)
        assert str(view["text"]).strip() == reply.text.strip()
        return
    found = browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();")
    assert found == [], f"{name}: live markup in the browser's page {path}: {found}"


def assert_raw_is_never_a_document(name: str, headers: Message) -> None:
    """A raw file is served so that it can never run in the site's origin."""
    policy = str(headers.get("Content-Security-Policy", ""))
    assert "sandbox" in [part.strip().split(" ", 1)[0] for part in policy.split(";")], (name, policy)
    assert str(headers.get("X-Content-Type-Options", "")).lower() == "nosniff", name
    assert _media_type(headers) not in RENDERED_TYPES, (name, headers.get("Content-Type"))
    assert _media_type(headers) in ("text/plain", "application/octet-stream"), (name, headers.get("Content-Type"))


@pytest.mark.parametrize("filename", RAW_DOCUMENTS)
def test_raw_documents_are_plain_even_when_asked_as_html(stack: Stack, seeded: Seeded, filename: str) -> None:
    """A client's Accept header changes nothing: the raw file is never a document."""
    del seeded
    path = _path(GIT_REPO, "raw", "main", filename)
    reply = fetch(stack, path, headers={"Accept": "text/html,image/svg+xml,*/*"})
    assert reply.status == 200
    assert_raw_is_never_a_document(filename, reply.headers)
    assert reply.body == dict(RAW_DOCUMENTS_CONTENT)[filename]


RAW_DOCUMENTS_CONTENT = (("probe.html", probes.RAW_HTML.encode()), ("probe.svg", probes.RAW_SVG.encode()))


def test_token_label_stays_inert(stack: Stack, signed_in: Browser) -> None:
    """A token's label is the user's own text, shown on the settings page: escaped there too."""
    browser = signed_in
    create_token(browser, probes.TOKEN_LABEL)
    reply = fetch(stack, "/settings/tokens", headers=browser.cookie_header())
    assert reply.status == 200
    assert probes.live_markup(reply.text) == []
    assert probes.unescaped(reply.text) == []
    browser.visit("/settings/tokens", "settings-tokens-with-probe-label")
    assert browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();") == []


#: Pages that echo what the visitor sent (the URL, a form): (name, path, statuses the server may answer).
REFLECTED: list[tuple[str, str, tuple[int, ...]]] = [
    ("login-next-markup", "/login?" + urlencode({"next": f"/{probes.SVG_BREAKOUT}"}), (200,)),
    ("login-next-javascript", "/login?" + urlencode({"next": probes.JS_NAME}), (200,)),
    ("missing-page-markup", _path(probes.IMG, probes.SVG_BREAKOUT), (303,)),
    ("missing-site-page-markup", _path("settings", probes.IMG), (303,)),
    ("missing-file-markup", _path(GIT_REPO, "blob", "main", f"no{probes.IMG}"), (404,)),
    ("missing-ref-markup", _path(GIT_REPO, "tree", f"no{probes.SVG_BREAKOUT}"), (404,)),
    ("missing-commit-markup", _path(GIT_REPO, "commit", probes.SVG_BREAKOUT), (404,)),
]


@pytest.mark.parametrize(("name", "path", "statuses"), REFLECTED, ids=[name for name, _, _ in REFLECTED])
def test_reflected_probes_stay_inert(stack: Stack, browser: Browser, name: str, path: str,
                                     statuses: tuple[int, ...]) -> None:
    """Anonymous: what a link could make the site echo (the page, a sign-in's next) stays text."""
    browser.driver.delete_all_cookies()
    reply = fetch(stack, path)
    assert reply.status in statuses, (name, reply.status, reply.text[:300])
    assert "WWW-Authenticate" not in reply.headers
    assert probes.live_markup(reply.text) == [] and probes.unescaped(reply.text) == [], name
    browser.visit(path, name)
    assert browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();") == []


def test_a_refused_sign_in_echoes_the_username_as_text(stack: Stack, browser: Browser) -> None:
    browser.driver.delete_all_cookies()
    browser.visit("/login", "sign-in-form-for-probe")
    form = sign_in_form(browser)
    form.find_element(By.NAME, USER_FIELD).send_keys(probes.SVG_BREAKOUT)
    form.find_element(By.NAME, PASSWORD_FIELD).send_keys("wrong password")
    submit(browser, form)
    browser.seen("sign-in-refused-probe-username")
    assert sign_in_form(browser).find_element(By.NAME, USER_FIELD).get_attribute("value") == probes.SVG_BREAKOUT
    assert browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();") == []
    stack.forget_failed_logins()


@pytest.mark.parametrize("wanted", [probes.JS_NAME, f"//{probes.IMG}", "https://example.com/"])
def test_signing_in_never_goes_off_the_site(browser: Browser, wanted: str) -> None:
    """``next`` may only be a path of the site: a javascript: URL or another host goes home instead."""
    browser.driver.delete_all_cookies()
    browser.visit("/login?" + urlencode({"next": wanted}), "sign-in-form-odd-next")
    form = sign_in_form(browser)
    form.find_element(By.NAME, USER_FIELD).send_keys(USER)
    form.find_element(By.NAME, PASSWORD_FIELD).send_keys(PASSWORD)
    submit(browser, form)
    browser.seen("signed-in-odd-next")
    assert browser.driver.current_url == browser.base + "/"
    assert browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();") == []


def test_the_checks_catch_a_live_probe(browser: Browser) -> None:
    """The checks above would fail on a page that let a probe through: shown on a page of our own
    (plain HTTP on loopback), once under the site's CSP and once without one."""
    page = f"<!doctype html><title>t</title><p>{probes.IMG}</p><a href=\"javascript:{probes.MARK}\">x</a>"
    assert probes.live_markup(page) and probes.unescaped(page)
    with vulnerable_page(page.encode(), CONTENT_SECURITY_POLICY) as url:
        browser.driver.get(url)
        assert any("Content Security Policy" in line for line in browser.console_problems())
        found = browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();")
        assert isinstance(found, list) and len(found) >= 2 and not any("__xss is set" in item for item in found)
    with vulnerable_page(page.encode(), None) as url:
        browser.driver.get(url)
        found = browser.script(f"return (function () {{ {probes.LIVE_MARKUP} }})();")
        assert isinstance(found, list) and "window.__xss is set: a probe ran" in found
    browser.console_problems()


@contextlib.contextmanager
def vulnerable_page(body: bytes, policy: str | None) -> Iterator[str]:
    """Serve ``body`` as text/html (with ``policy`` as its CSP) on a free loopback port; its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            if policy is not None:
                self.send_header("Content-Security-Policy", policy)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
