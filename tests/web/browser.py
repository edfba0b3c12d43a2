"""A real browser against a real stack: Debian's chromium driven through chromedriver.

- :func:`open_browser` starts headless chromium through ``/usr/bin/chromedriver``
  (never Selenium Manager: the driver's path is always given, and nothing is
  downloaded). The stack's certificate is trusted by pinning it, not by
  ignoring certificate errors: ``--ignore-certificate-errors-spki-list`` gets
  the SHA-256 of the server certificate's SubjectPublicKeyInfo, read from the
  stack's own TLS files (:mod:`hostd.ops.tls`), so only that one certificate is
  accepted (and only for its host names: the name check still applies).
- :class:`Browser` visits pages, saves a screenshot of each (numbered in visit
  order, under :func:`screenshot_dir`) and reads the browser's console after
  each: a Content-Security-Policy violation means the page used inline
  script or style (which the CSP forbids) or let markup through that tried to.
- :func:`fetch` is one HTTPS request over :mod:`http.client`, verified
  against the stack's CA, redirects not followed: what the server sent.
- :func:`running_stack` and :func:`browsing` are the bodies of the test
  modules' module-scoped fixtures (one stack and one browser per module).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import re
import shutil
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, UnexpectedAlertPresentException
from selenium.webdriver.chrome.service import Service

from tests.e2e.stackfixture import Stack, start_stack, stop_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Console messages that mean the page broke its own Content-Security-Policy, or
#: that a sandboxed document (a raw file) tried to run script.
_VIOLATION = re.compile(r"Content[- ]Security[- ]Policy|Blocked script execution|Uncaught", re.IGNORECASE)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def spki_pin(tls_dir: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the certificate HAProxy presents (the first in server.pem)."""
    certificate = x509.load_pem_x509_certificate((tls_dir / "server.pem").read_bytes())
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def screenshot_dir() -> Path:
    """``$HOSTD_ARTIFACTS/screenshots``, else ``test-artifacts/screenshots`` in the checkout."""
    root = os.environ.get("HOSTD_ARTIFACTS")
    base = Path(root) if root else REPO_ROOT / "test-artifacts"
    return base / "screenshots"


def tls_context(stack: Stack) -> ssl.SSLContext:
    """A client context that trusts the stack's CA, and nothing else."""
    return ssl.create_default_context(cafile=str(stack.settings.tls_dir / "ca.pem"))


@dataclass(frozen=True)
class Reply:
    """What the server answered one request: status, headers (case-insensitive) and body."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def fetch(stack: Stack, path: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
          body: bytes | None = None) -> Reply:
    """One request through HAProxy over HTTPS (the stack's CA verified); redirects are not followed."""
    host, port = stack.settings.bind, stack.settings.ports.https
    conn = http.client.HTTPSConnection(host, port, context=tls_context(stack), timeout=20)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        kept = http.client.HTTPMessage()
        for name, value in response.getheaders():
            kept[name] = value
        return Reply(response.status, kept, data)
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header with Basic credentials."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Browser:
    """One headless chromium: visits pages of one stack, screenshots them in order, checks the console."""

    driver: webdriver.Chrome
    base: str
    shots: Path
    prefix: str
    visited: list[Path] = field(default_factory=list)
    #: Who the browser last signed in as (tests/web/forms.py), so a test can tell its session is someone else's.
    session_user: str | None = None

    def visit(self, path: str, name: str) -> None:
        """Open ``path`` of the stack (or an absolute URL), then :meth:`seen` it as ``name``."""
        url = path if "://" in path else self.base + path
        try:
            self.driver.get(url)
        except UnexpectedAlertPresentException as error:
            raise AssertionError(f"{name}: an alert opened while {url} loaded: {error.alert_text!r}") from error
        self.seen(name)

    def seen(self, name: str) -> None:
        """The page now shown (after a visit, a click or a form): screenshot it, check no alert and the console."""
        self.assert_no_alert(name)
        self.screenshot(name)
        violations = self.console_problems()
        assert not violations, f"{name} ({self.path}): console errors:\n" + "\n".join(violations)

    def screenshot(self, name: str) -> Path:
        target = self.shots / f"{self.prefix}-{len(self.visited) + 1:03d}-{_UNSAFE_NAME.sub('_', name)}.png"
        assert self.driver.save_screenshot(str(target)), f"no screenshot of {name}"
        self.visited.append(target)
        return target

    def assert_no_alert(self, name: str) -> None:
        try:
            alert = self.driver.switch_to.alert
        except NoAlertPresentException:
            return
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"{name} ({self.path}): an alert opened: {text!r}")

    def console_problems(self) -> list[str]:
        """The console's CSP violations, sandbox blocks and uncaught errors since the last call."""
        entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry.get("message", "")) for entry in entries
                if _VIOLATION.search(str(entry.get("message", "")))]

    @property
    def path(self) -> str:
        """The path and query of the page shown now."""
        parts = urlsplit(self.driver.current_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def cookie_header(self) -> dict[str, str]:
        """The browser's cookies for the stack, as a Cookie header (to fetch the same pages as the same visitor)."""
        cookies = "; ".join(f"{c['name']}={c['value']}" for c in self.driver.get_cookies())
        return {"Cookie": cookies} if cookies else {}

    def script(self, source: str) -> object:
        """Run ``source`` in the page (the test's own script, not the page's: CSP does not apply to it)."""
        return self.driver.execute_script(source)


def chrome_options(stack: Stack, profile: Path) -> webdriver.ChromeOptions:
    """Headless chromium that accepts this stack's certificate alone, and keeps its console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     f"--user-data-dir={profile}",
                     f"--ignore-certificate-errors-spki-list={spki_pin(stack.settings.tls_dir)}",
                     "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                     "--disable-background-networking", "--disable-sync", "--disable-component-update",
                     "--disable-features=Translate,OptimizationHints,MediaRouter",
                     "--hide-scrollbars", "--force-color-profile=srgb", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An alert stays open for assert_no_alert to see, instead of being dismissed unseen.
    options.unhandled_prompt_behavior = "ignore"
    return options


def open_browser(stack: Stack, profile: Path, prefix: str) -> Browser:
    """Start chromium for ``stack``; screenshots named ``PREFIX-NN-PAGE.png``, this prefix's old ones removed."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "install chromium and chromium-driver (make test does)"
    shots = screenshot_dir()
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob(f"{prefix}-*.png"):
        old.unlink()
    profile.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile.parent / f"{prefix}-chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=chrome_options(stack, profile))
    driver.set_page_load_timeout(30)
    return Browser(driver, stack.base, shots, prefix)


def running_stack(factory: pytest.TempPathFactory, name: str) -> Iterator[Stack]:
    """Body of a module-scoped stack fixture: a real stack, stopped after the module."""
    running = start_stack(factory.mktemp(name))
    try:
        yield running
    finally:
        stop_stack(running)


def browsing(stack: Stack, request: pytest.FixtureRequest, prefix: str) -> Iterator[Browser]:
    """Body of a module-scoped browser fixture: chromium for ``stack``, quit after the module;
    then the screenshots' directory is printed (past pytest's capture: it is the point of them)."""
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    profile = factory.mktemp(f"{prefix}-chromium") / "profile"
    browser = open_browser(stack, profile, prefix)
    try:
        yield browser
    finally:
        browser.driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(f"\n{len(browser.visited)} screenshots of the {prefix} pages in {browser.shots}")
