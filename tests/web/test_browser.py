"""The web tier in a real browser against a real stack: sign in, browse, tokens, sign out.

Debian's chromium, driven through chromedriver (tests/web/browser.py), uses
the site as a person would: it signs in through the /login form, reads the
home page, browses a tree, opens a file and a commit, creates a token (shown
once) and revokes it, and signs out. Every page visited is saved as a
screenshot (the directory is printed at the end) and its console is checked
for Content-Security-Policy violations: one means the page used an inline
script or style, which the CSP forbids.

Also: an anonymous visit to a private repository and to a missing one land
on the sign-in form the same way (nothing tells them apart), and no
mistyped URL pops the browser's password dialog (no ``WWW-Authenticate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.stackfixture import Stack
from tests.polling import wait_until
from tests.web.browser import Browser, basic, browsing, fetch, running_stack
from tests.web.forms import (
    PASSWORD_FIELD,
    TOKEN_VALUE,
    USER_FIELD,
    create_token,
    ensure_signed_in,
    revoke_token,
    sign_in,
    sign_in_form,
    sign_out,
    signed_in_as,
    submit,
    token_row,
    token_rows,
)
from tests.web.seed import GitHistory, HgHistory

USER, PASSWORD = "alice", "alice-password-1"
OTHER, OTHER_PASSWORD = "bob", "bob-password-1"
PUBLIC, PRIVATE, HG, SHARED = f"{USER}/website", f"{USER}/secret", f"{USER}/notes", f"{OTHER}/shared"
MISSING = f"{USER}/no-such-repo"

APP_V1 = b'"""The website\'s app."""\n\n\ndef greet():\n    return "Hello, world"\n'
APP_V2 = b'"""The website\'s app."""\n\n\ndef greet(name):\n    return f"Hello, {name}"\n'
README = b"# Website\n\nA **demo** site, with [a guide](docs/guide.md).\n\n- one\n- two\n"


@dataclass(frozen=True)
class Seeded:
    """The commits the pages should show."""

    greet: str
    hg_second: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory, "browser-stack")


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    work = tmp_path_factory.mktemp("browser-work")
    stack.add_user(USER, PASSWORD)
    stack.add_user(OTHER, OTHER_PASSWORD)
    stack.hostd("repo", "create", PUBLIC, "--vcs", "git", "--public")
    stack.hostd("repo", "create", PRIVATE, "--vcs", "git")
    stack.hostd("repo", "create", HG, "--vcs", "hg")
    stack.hostd("repo", "create", SHARED, "--vcs", "git")
    stack.hostd("grant", USER, SHARED, "read")

    site = GitHistory(stack, work / "website")
    site.commit("Add the README, the app and a guide", {
        "README.md": README, "src/app.py": APP_V1, "docs/guide.md": b"# Guide\n\nRead me.\n"})
    greet = site.commit("Greet by name", {"src/app.py": APP_V2})
    site.git("tag", "v1.0")
    site.commit("Add a stylesheet", {"static/site.css": b"body { color: black; }\n"})
    site.git("checkout", "-q", "-b", "feature")
    site.commit("A feature", {"feature.txt": b"feature\n"})
    site.git("checkout", "-q", "main")
    site.push(PUBLIC)

    secret = GitHistory(stack, work / "secret")
    secret.commit("Secret notes", {"README.md": b"# Secret\n", "notes.txt": b"private\n"})
    secret.push(PRIVATE)
    shared = GitHistory(stack, work / "shared")
    shared.commit("Shared", {"README.md": b"# Shared by bob\n"})
    shared.push(SHARED)

    notes = HgHistory(stack, work / "notes")
    notes.commit("Start the notes", {"README.md": b"# Notes\n\nKept in *Mercurial*.\n",
                                    "lib/util.py": b"def double(x):\n    return 2 * x\n"})
    hg_second = notes.commit("Triple too", {"lib/util.py": b"def triple(x):\n    return 3 * x\n"})
    notes.hg("bookmark", "--inactive", "stable")
    notes.push(HG)
    return Seeded(greet, hg_second)


@pytest.fixture(scope="module")
def browser(stack: Stack, seeded: Seeded, request: pytest.FixtureRequest) -> Iterator[Browser]:
    del seeded
    yield from browsing(stack, request, "browser")


@pytest.fixture
def anonymous(browser: Browser) -> Browser:
    """The browser, signed out (no cookies)."""
    browser.driver.delete_all_cookies()
    return browser


@pytest.fixture
def signed_in(browser: Browser) -> Browser:
    """The browser, signed in as alice (through the form, when it is not yet)."""
    return ensure_signed_in(browser, USER, PASSWORD)


def sign_in_location(path: str) -> str:
    return "/login?" + urlencode({"next": path})


def test_anonymous_private_and_missing_pages_land_on_the_same_sign_in_form(stack: Stack, anonymous: Browser) -> None:
    for suffix in ("", "/tree/main/src", "/commits/main"):
        pages = {}
        for repo in (PRIVATE, MISSING):
            path = f"/{repo}{suffix}"
            anonymous.visit(path, f"anonymous-{repo.replace('/', '-')}{suffix.replace('/', '-')}")
            assert anonymous.path == sign_in_location(path)
            sign_in_form(anonymous)
            reply = fetch(stack, path)
            assert reply.status == 303
            assert "WWW-Authenticate" not in reply.headers
            location = str(reply.headers["Location"])
            assert urlsplit(location).path + "?" + urlsplit(location).query == sign_in_location(path)
            # Everything but the page named in the location is the same for both.
            headers = {name.lower(): re.sub(r"=[^;]*", "=VALUE", value) if name.lower() == "set-cookie" else value
                       for name, value in reply.headers.items()
                       if name.lower() not in ("date", "x-request-id", "location", "content-length")}
            page = anonymous.driver.page_source.replace(repo, "OWNER/NAME").replace(
                repo.replace("/", "%2F"), "OWNER%2FNAME")
            pages[repo] = (reply.body, headers, page)
        assert pages[PRIVATE][0] == pages[MISSING][0]
        assert pages[PRIVATE][1] == pages[MISSING][1]
        assert _without_csrf(pages[PRIVATE][2]) == _without_csrf(pages[MISSING][2])


def _without_csrf(page: str) -> str:
    """A page without the values of its hidden fields (the CSRF token differs on every visit)."""
    return re.sub(r'(<input[^>]*type="hidden"[^>]*value=")[^"]*', r"\1", page)


MISTYPED = ["/nope", "/nope/nope", f"/{PUBLIC}/nope", f"/{PUBLIC}/blob/main/nope.txt", f"/{PUBLIC}/tree/no-branch",
            f"/{PUBLIC}/commit/{'0' * 40}", f"/{PRIVATE}/blob/main/nope", "/a/b/c/d/e", "/settings/nope",
            "/static/nope.css", f"/{USER}", "/login/nope"]


def test_mistyped_urls_ask_for_no_password(stack: Stack, anonymous: Browser) -> None:
    """A browser shows the password dialog for a 401 with WWW-Authenticate: no page of the site sends one."""
    for path in MISTYPED:
        reply = fetch(stack, path)
        assert "WWW-Authenticate" not in reply.headers, f"{path} answered {reply.status} with a password challenge"
        assert reply.status in (303, 404), f"{path} answered {reply.status}"
    anonymous.visit(f"/{PUBLIC}/blob/main/nope.txt", "mistyped-file")
    anonymous.visit("/nope", "mistyped-page")


def test_wrong_password_shows_the_form_again(stack: Stack, anonymous: Browser) -> None:
    anonymous.visit(sign_in_location("/"), "sign-in-form")
    form = sign_in_form(anonymous)
    form.find_element(By.NAME, USER_FIELD).send_keys(USER)
    form.find_element(By.NAME, PASSWORD_FIELD).send_keys("not-the-password")
    submit(anonymous, form)
    anonymous.seen("sign-in-refused")
    sign_in_form(anonymous)
    assert signed_in_as(anonymous) is None
    assert "not-the-password" not in anonymous.driver.page_source
    stack.forget_failed_logins()


def test_sign_in_and_see_your_repositories(anonymous: Browser) -> None:
    sign_in(anonymous, USER, PASSWORD)
    yours = _listed(anonymous, "Your repositories")
    shared = _listed(anonymous, "Shared with you")
    assert {f"/{PUBLIC}", f"/{PRIVATE}", f"/{HG}"} <= yours, yours
    assert f"/{SHARED}" in shared, shared
    assert f"/{SHARED}" not in yours


def _listed(browser: Browser, heading: str) -> set[str]:
    """The repository links listed under ``heading`` on the page shown."""
    links = browser.driver.find_elements(
        By.XPATH, f"//*[self::h1 or self::h2][normalize-space()='{heading}']/following-sibling::*[1]//a[@href]")
    assert links, f"nothing listed under {heading!r} on {browser.path}"
    return {urlsplit(str(link.get_attribute("href"))).path for link in links}


def _click(browser: Browser, text: str, name: str) -> None:
    """Follow the link whose text is ``text`` in the page's main part."""
    links = [link for link in browser.driver.find_elements(By.CSS_SELECTOR, "main a[href]")
             if link.text.strip() == text]
    assert links, f"no link {text!r} on {browser.path}"
    links[0].click()
    browser.seen(name)


def test_browse_a_tree_open_a_file_and_a_commit(signed_in: Browser, seeded: Seeded) -> None:
    browser = signed_in
    browser.visit(f"/{PUBLIC}", "repository")
    readme = browser.driver.find_element(By.CSS_SELECTOR, ".markdown")
    assert readme.find_element(By.TAG_NAME, "h1").text == "Website"
    assert readme.find_element(By.TAG_NAME, "strong").text == "demo"
    assert browser.driver.find_elements(By.CSS_SELECTOR, ".clone")

    _click(browser, "src/", "tree-src")
    assert browser.path == f"/{PUBLIC}/tree/main/src"
    _click(browser, "app.py", "blob-app-py")
    assert browser.path == f"/{PUBLIC}/blob/main/src/app.py"
    code = browser.driver.find_element(By.CSS_SELECTOR, "table.code")
    assert "def greet(name):" in code.text
    highlighted = code.find_elements(By.CSS_SELECTOR, "span[class]")
    assert len(highlighted) >= 4, "the source is not highlighted"
    # Coloured by the site's stylesheet (classes only: the CSP allows no inline style).
    keyword = code.find_element(By.XPATH, ".//span[normalize-space()='def']")
    plain = code.find_element(By.CSS_SELECTOR, "td.text")
    assert keyword.value_of_css_property("color") != plain.value_of_css_property("color")

    browser.visit(f"/{PUBLIC}/commits/main", "commits")
    assert "Greet by name" in browser.driver.find_element(By.TAG_NAME, "main").text
    _click(browser, "Greet by name", "commit")
    assert browser.path == f"/{PUBLIC}/commit/{seeded.greet}"
    added = [row.text for row in browser.driver.find_elements(By.CSS_SELECTOR, ".diff .add")]
    removed = [row.text for row in browser.driver.find_elements(By.CSS_SELECTOR, ".diff .del")]
    assert any("def greet(name):" in line for line in added), added
    assert any("def greet():" in line for line in removed), removed

    browser.visit(f"/{PUBLIC}/branches", "branches")
    assert {"main", "feature"} <= set(browser.driver.find_element(By.TAG_NAME, "main").text.split())
    browser.visit(f"/{PUBLIC}/tags", "tags")
    assert "v1.0" in browser.driver.find_element(By.TAG_NAME, "main").text


def test_browse_a_private_hg_repository(signed_in: Browser, seeded: Seeded) -> None:
    browser = signed_in
    browser.visit(f"/{HG}", "hg-repository")
    assert browser.driver.find_element(By.CSS_SELECTOR, ".markdown em").text == "Mercurial"
    _click(browser, "lib/", "hg-tree-lib")
    _click(browser, "util.py", "hg-blob-util-py")
    assert "def triple(x):" in browser.driver.find_element(By.CSS_SELECTOR, "table.code").text
    browser.visit(f"/{HG}/commit/{seeded.hg_second}", "hg-commit")
    assert any("def triple(x):" in row.text for row in browser.driver.find_elements(By.CSS_SELECTOR, ".diff .add"))
    browser.visit(f"/{HG}/bookmarks", "hg-bookmarks")
    assert "stable" in browser.driver.find_element(By.TAG_NAME, "main").text


def test_a_shared_private_repository_is_readable(signed_in: Browser) -> None:
    signed_in.visit(f"/{SHARED}", "shared-repository")
    assert signed_in.driver.find_element(By.CSS_SELECTOR, ".markdown h1").text == "Shared by bob"


def _ls_remote(stack: Stack, secret: str) -> int:
    result = stack.clients.git("ls-remote", stack.url(f"{PRIVATE}.git", USER, secret), check=False, timeout=60)
    return result.returncode


def test_create_a_token_shown_once_then_revoke_it(stack: Stack, signed_in: Browser) -> None:
    browser = signed_in
    secret = create_token(browser, "laptop")
    assert len(secret) >= 20 and secret != PASSWORD
    token_row(browser, secret)
    assert _ls_remote(stack, secret) == 0, "git ls-remote with the new token failed"
    assert fetch(stack, f"/{PRIVATE}", headers=basic(USER, secret)).status == 200

    browser.driver.refresh()
    browser.seen("token-page-reloaded")
    assert secret not in browser.driver.page_source
    browser.visit("/settings/tokens", "token-page-again")
    assert secret not in browser.driver.page_source
    assert not browser.driver.find_elements(By.CSS_SELECTOR, TOKEN_VALUE)
    assert "active" in token_row(browser, secret).text

    revoke_token(browser, secret)
    wait_until("the revoked token no longer works", lambda: _ls_remote(stack, secret) != 0, timeout=10)
    reply = fetch(stack, f"/{PRIVATE}", headers=basic(USER, secret))
    assert reply.status == 401, reply.status
    stack.forget_failed_logins()


def test_reloading_the_new_token_page_creates_no_second_token(signed_in: Browser) -> None:
    browser = signed_in
    create_token(browser, "reloaded")
    before = len(token_rows(browser))
    browser.driver.refresh()
    browser.seen("token-page-reloaded-again")
    assert len(token_rows(browser)) == before


def test_sign_out(signed_in: Browser) -> None:
    browser = signed_in
    sign_out(browser)
    assert signed_in_as(browser) is None
    browser.visit(f"/{PRIVATE}", "private-after-sign-out")
    assert browser.path == sign_in_location(f"/{PRIVATE}")
    sign_in_form(browser)
    browser.visit("/settings/tokens", "settings-after-sign-out")
    assert urlsplit(browser.driver.current_url).path == "/login"
