"""Access tokens and SSH keys on the settings pages, through the web pool's whole stack."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import webtest

from hostd.store.keys import Keys, parse_public_key
from hostd.store.usertokens import UserTokens
from hostd.web.settings import NEW_TOKEN_COOKIE
from singlemalt import BasicCredentials, BearerCredentials, Scope, Verifier
from tests.hostd.conftest import Site
from tests.hostd.store.test_keys import ED, keygen, ssh_fingerprint
from tests.hostd.web.conftest import BASE_URL
from tests.hostd.web.pool import basic, browser, sign_in

TOKEN = re.compile(r"smt_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def alice(site: Site) -> webtest.TestApp:
    """A browser signed in as alice (who owns alice/notes); bob exists too."""
    site.repo("alice", "notes", "git")
    site.accounts.add_user("bob", "password-bob")
    client = browser(site)
    sign_in(client, "alice", "password-alice")
    return client


def last_form(page: webtest.TestResponse) -> webtest.Form:
    """The page's last form (the one that adds something)."""
    return page.forms[len(page.forms) - 1]


def create_token(client: webtest.TestApp, label: str, scope: str) -> tuple[webtest.TestResponse, str]:
    form = client.get("/settings/tokens").forms[1]  # after the header's sign-out form
    form["label"] = label
    form["scope"] = scope
    posted = form.submit(status=303)
    assert posted.location == BASE_URL + "/settings/tokens" and not TOKEN.search(posted.text)
    page = posted.follow()
    found = TOKEN.search(page.text)
    assert found is not None
    return page, found.group(0)


@pytest.mark.parametrize("path", ["/settings/tokens", "/settings/keys", "/settings"])
def test_anonymous_visitors_are_sent_to_sign_in_and_come_back(site: Site, path: str) -> None:
    site.accounts.add_user("alice", "password-alice")
    client = browser(site)
    sent = client.get(path, status=303)
    assert sent.location == BASE_URL + "/login?next=" + path.replace("/", "%2F")
    back = sign_in(client, "alice", "password-alice", next_path=path)
    assert back.location == BASE_URL + path
    client.get(path, status=(200, 303))


def test_a_token_is_shown_once_works_and_stops_working_when_revoked(
        site: Site, alice: webtest.TestApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    page, token = create_token(alice, "ci <runner>", "write")
    assert "shown only this once" in page.text and page.headers["Cache-Control"] == "no-store"
    assert "ci &lt;runner&gt;" in page.text and "<runner>" not in page.text
    assert page.text.count(token) == 1
    assert token not in alice.get("/settings/tokens").text  # never again
    assert token not in caplog.text
    verifier = Verifier(site.accounts)
    for credentials in (BearerCredentials(token), BasicCredentials("alice", token)):
        identity = verifier.verify(credentials)
        assert identity is not None and (identity.username, identity.scope) == ("alice", Scope.WRITE)
    script = browser(site)
    assert ">alice</a>" in script.get("/", headers={"Authorization": "Bearer " + token}).text
    script.get("/alice/notes", headers=basic("alice", token), status=200)

    listing = alice.get("/settings/tokens")
    revoke = next(f for f in listing.forms.values() if f.action.endswith("/revoke"))
    done = revoke.submit(status=303)
    assert done.location == BASE_URL + "/settings/tokens"
    assert "revoked" in alice.get("/settings/tokens").text
    assert verifier.verify(BearerCredentials(token)) is None
    script.get("/", headers={"Authorization": "Bearer " + token}, status=401)
    script.get("/alice/notes", headers=basic("alice", token), status=401)


def test_reloading_the_page_that_showed_a_token_makes_no_second_one(site: Site, alice: webtest.TestApp) -> None:
    """Post, redirect, get: the reload is a GET, which neither posts the form again nor shows the token."""
    _, token = create_token(alice, "laptop", "read")
    again = alice.get("/settings/tokens")
    assert token not in again.text
    assert len(UserTokens(site.accounts).for_user("alice")) == 1


def test_a_new_token_cookie_shows_only_the_users_own_token(site: Site, alice: webtest.TestApp) -> None:
    bobs = UserTokens(site.accounts).create("bob", Scope.READ, "bob's")
    alice.set_cookie(NEW_TOKEN_COOKIE, bobs.token)
    page = alice.get("/settings/tokens")
    assert bobs.token not in page.text and "Max-Age=0" in page.headers["Set-Cookie"]


def test_a_read_token_carries_its_scope(site: Site, alice: webtest.TestApp) -> None:
    _, token = create_token(alice, "", "read")
    identity = Verifier(site.accounts).verify(BearerCredentials(token))
    assert identity is not None and identity.scope is Scope.READ
    assert "(no label)" in alice.get("/settings/tokens").text


def test_a_token_needs_a_scope_and_a_fitting_label(alice: webtest.TestApp) -> None:
    form = alice.get("/settings/tokens").forms[1]
    csrf = form["csrf"].value
    refused = alice.post("/settings/tokens", {"csrf": csrf, "label": "x"}, status=400)
    assert "Choose what the token may do" in refused.text and not TOKEN.search(refused.text)
    refused = alice.post("/settings/tokens", {"csrf": csrf, "label": "x" * 101, "scope": "read"}, status=400)
    assert "at most 100 characters" in refused.text and not TOKEN.search(refused.text)


def test_forms_without_the_pages_token_change_nothing(site: Site, alice: webtest.TestApp) -> None:
    alice.post("/settings/tokens", {"label": "forged", "scope": "write"}, status=403)
    issued = UserTokens(site.accounts).create("alice", Scope.READ, "mine")
    alice.post(f"/settings/tokens/{issued.token_id}/revoke", {"csrf": "forged"}, status=403)
    alice.post("/settings/keys", {"key": ED}, status=403)
    assert [t.label for t in UserTokens(site.accounts).for_user("alice")] == ["mine"]
    assert not UserTokens(site.accounts).for_user("alice")[0].revoked
    assert Keys(site.accounts.db).for_user("alice") == []


def test_someone_elses_token_or_key_is_not_found(site: Site, alice: webtest.TestApp) -> None:
    bobs = UserTokens(site.accounts).create("bob", Scope.WRITE, "bob's")
    csrf = alice.get("/settings/tokens").forms[0]["csrf"].value
    refused = alice.post(f"/settings/tokens/{bobs.token_id}/revoke", {"csrf": csrf}, status=404)
    assert "You have no such token." in refused.text
    assert not UserTokens(site.accounts).for_user("bob")[0].revoked
    key = Keys(site.accounts.db).add("bob", parse_public_key(ED), "bob's")
    alice.post(f"/settings/keys/{key.key_id}/delete", {"csrf": csrf}, status=404)
    assert len(Keys(site.accounts.db).for_user("bob")) == 1


def test_an_access_token_cannot_manage_tokens_or_keys(site: Site, alice: webtest.TestApp) -> None:
    _, token = create_token(alice, "ci", "write")
    script = browser(site)
    bearer = {"Authorization": "Bearer " + token}
    refused = script.get("/settings/tokens", headers=bearer, status=403)
    assert "An access token cannot manage tokens or keys" in refused.text
    script.post("/settings/tokens", {"label": "more", "scope": "write"}, headers=bearer, status=403)
    script.post("/settings/keys", {"key": ED}, headers=basic("alice", token), status=403)
    assert len(UserTokens(site.accounts).for_user("alice")) == 1
    assert Keys(site.accounts.db).for_user("alice") == []


def test_a_script_with_the_password_needs_no_csrf_token(site: Site) -> None:
    site.accounts.add_user("alice", "password-alice")
    script = browser(site)
    page = script.post("/settings/tokens", {"label": "from curl", "scope": "read"},
                       headers=basic("alice", "password-alice"))
    assert TOKEN.search(page.text)


def test_ssh_keys_are_added_checked_listed_and_removed(
        site: Site, alice: webtest.TestApp, tmp_path: Path) -> None:
    pub = keygen(tmp_path, "ed25519", comment="alice@laptop")
    form = alice.get("/settings/keys").forms[1]
    form["key"] = pub.read_text()
    assert form.submit(status=303).location == BASE_URL + "/settings/keys"
    listing = alice.get("/settings/keys")
    assert ssh_fingerprint(pub) in listing.text and "alice@laptop" in listing.text  # the comment is the title
    [record] = Keys(site.accounts.db).for_user("alice")
    assert record.fingerprint == ssh_fingerprint(pub)

    again = last_form(listing)
    again["key"], again["title"] = pub.read_text(), "twice"
    assert "already in use" in again.submit(status=400).text
    dsa = last_form(alice.get("/settings/keys"))
    dsa["key"] = "ssh-dss AAAAB3NzaC1kc3MAAACBAP"
    assert "DSA keys (ssh-dss) are refused as weak" in dsa.submit(status=400).text
    garbage = last_form(alice.get("/settings/keys"))
    garbage["key"] = "<script>alert(1)</script>"
    refused = garbage.submit(status=400)
    assert "unsupported key type" in refused.text and "<script>alert" not in refused.text

    remove = next(f for f in alice.get("/settings/keys").forms.values() if f.action.endswith("/delete"))
    assert remove.submit(status=303).location == BASE_URL + "/settings/keys"
    assert Keys(site.accounts.db).for_user("alice") == []
    assert "No keys yet." in alice.get("/settings/keys").text


def test_a_title_given_is_the_keys_title(site: Site, alice: webtest.TestApp) -> None:
    form = alice.get("/settings/keys").forms[1]
    form["key"], form["title"] = ED + " a-comment", "work laptop"
    form.submit(status=303)
    assert [k.title for k in Keys(site.accounts.db).for_user("alice")] == ["work laptop"]
