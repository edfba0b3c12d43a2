"""The site's forms, filled in and sent in the browser as a person would: sign in, sign out, tokens.

The selectors name what hostd/web/templates render (login.html,
settings_tokens.html, base.html's sign-out form): one place to change if
the pages change.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.web.browser import Browser

#: hostd.web.session.SESSION_COOKIE (not imported: the tests read the site as a browser does).
SESSION_COOKIE = "__Host-hostd_session"
SIGN_IN_FORM = "form.signin"
USER_FIELD = "username"
PASSWORD_FIELD = "password"
SIGN_OUT_BUTTON = "header.site form[action='/logout'] button"
TOKEN_FORM = "form[action='/settings/tokens']"
TOKEN_LABEL_FIELD = "label"
TOKEN_VALUE = ".token-value"
TOKEN_ROWS = "table.list tr"


def submit(browser: Browser, form: WebElement) -> None:
    """Press the form's submit button and wait for the next page."""
    old = browser.driver.find_element(By.TAG_NAME, "html")
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])").click()
    WebDriverWait(browser.driver, 20).until(lambda driver: _stale(old))


def _stale(element: WebElement) -> bool:
    try:
        element.is_enabled()
    except Exception:  # noqa: BLE001 - StaleElementReferenceException: the page was replaced
        return True
    return False


def sign_in_form(browser: Browser) -> WebElement:
    """The sign-in form of the page shown (a failure names the page when there is none)."""
    found = browser.driver.find_elements(By.CSS_SELECTOR, SIGN_IN_FORM)
    assert found, f"no sign-in form on {browser.path}"
    return found[0]


def sign_in(browser: Browser, user: str, password: str, *, wanted: str = "/") -> None:
    """Sign in through the /login form; lands on ``wanted``."""
    browser.visit("/login?" + urlencode({"next": wanted}), "sign-in-form")
    form = sign_in_form(browser)
    form.find_element(By.NAME, USER_FIELD).send_keys(user)
    form.find_element(By.NAME, PASSWORD_FIELD).send_keys(password)
    submit(browser, form)
    browser.seen(f"signed-in-{wanted.strip('/').replace('/', '-') or 'home'}")
    assert urlsplit(browser.driver.current_url).path == wanted, f"signed in, but landed on {browser.path}"
    assert signed_in_as(browser) == user


def ensure_signed_in(browser: Browser, user: str, password: str) -> Browser:
    """The browser signed in as ``user``: through the form unless it holds a session of ``user`` already."""
    if browser.driver.get_cookie(SESSION_COOKIE) is None or browser.session_user != user:
        browser.driver.delete_all_cookies()
        sign_in(browser, user, password)
        browser.session_user = user
    return browser


def signed_in_as(browser: Browser) -> str | None:
    """The user the page's header shows as signed in, or None."""
    found = browser.driver.find_elements(By.CSS_SELECTOR, "header.site .user")
    return found[0].text.strip() if found else None


def sign_out(browser: Browser) -> None:
    """Press the header's Sign out button."""
    button = browser.driver.find_element(By.CSS_SELECTOR, SIGN_OUT_BUTTON)
    submit(browser, button.find_element(By.XPATH, "./ancestor::form"))
    browser.seen("signed-out")


def create_token(browser: Browser, label: str) -> str:
    """Create a token on /settings/tokens; the secret the page shows (once)."""
    browser.visit("/settings/tokens", "settings-tokens")
    form = browser.driver.find_element(By.CSS_SELECTOR, TOKEN_FORM)
    form.find_element(By.NAME, TOKEN_LABEL_FIELD).send_keys(label)
    submit(browser, form)
    browser.seen("token-created")
    shown = browser.driver.find_elements(By.CSS_SELECTOR, TOKEN_VALUE)
    assert shown, f"no new token shown on {browser.path}"
    return shown[0].text.strip()


def token_rows(browser: Browser) -> list[WebElement]:
    """The rows of the token list on the settings page shown (not its heading)."""
    return [row for row in browser.driver.find_elements(By.CSS_SELECTOR, TOKEN_ROWS)
            if row.find_elements(By.TAG_NAME, "td")]


def token_row(browser: Browser, secret: str) -> WebElement:
    """The row of the token whose secret is ``secret``: the row's id is part of it."""
    for row in token_rows(browser):
        token_id = row.find_element(By.TAG_NAME, "code").text.strip()
        if token_id and token_id in secret:
            return row
    raise AssertionError(f"no row for the token on {browser.path}")


def revoke_token(browser: Browser, secret: str) -> None:
    """Press Revoke on the row of the token ``secret``."""
    browser.visit("/settings/tokens", "settings-tokens-before-revoke")
    row = token_row(browser, secret)
    submit(browser, row.find_element(By.CSS_SELECTOR, "form"))
    browser.seen("token-revoked")
    assert "revoked" in token_row(browser, secret).text
