"""A user's own tokens: created with a label, listed without secrets, revoked only by their owner."""

from __future__ import annotations

import pytest

from hostd.store.accounts import AccountError, Accounts
from hostd.store.database import Database
from hostd.store.usertokens import MAX_LABEL, UserTokens, check_label
from singlemalt import BasicCredentials, BearerCredentials, Scope, Verifier


@pytest.fixture
def accounts(database: Database) -> Accounts:
    accounts = Accounts(database)
    accounts.add_user("alice", "alice's password")
    accounts.add_user("bob", "bob's password")
    return accounts


def test_a_created_token_works_with_its_scope_until_revoked(accounts: Accounts) -> None:
    tokens = UserTokens(accounts)
    issued = tokens.create("Alice", Scope.READ, "  ci runner ")
    verifier = Verifier(accounts)
    for credentials in (BearerCredentials(issued.token), BasicCredentials("alice", issued.token)):
        identity = verifier.verify(credentials)
        assert identity is not None and (identity.username, identity.scope) == ("alice", Scope.READ)
    [listed] = tokens.for_user("alice")
    assert (listed.token_id, listed.label, listed.scope, listed.revoked) == (
        issued.token_id, "ci runner", "read", False)
    assert issued.token not in repr(listed) and issued.secret_hash not in repr(listed)

    assert tokens.revoke("alice", issued.token_id)
    assert verifier.verify(BearerCredentials(issued.token)) is None
    assert tokens.for_user("alice")[0].revoked


def test_someone_elses_token_is_answered_as_none(accounts: Accounts) -> None:
    tokens = UserTokens(accounts)
    bobs = tokens.create("bob", Scope.WRITE, "")
    assert not tokens.revoke("alice", bobs.token_id)
    assert not tokens.revoke("alice", "no-such-token")
    assert Verifier(accounts).verify(BearerCredentials(bobs.token)) is not None
    assert tokens.for_user("alice") == []


def test_tokens_made_by_the_cli_are_listed_without_a_label(accounts: Accounts) -> None:
    issued = accounts.create_token("alice", Scope.WRITE, 30)
    [listed] = UserTokens(accounts).for_user("alice")
    assert (listed.token_id, listed.label, listed.scope) == (issued.token_id, "", "write")
    assert listed.expires_at is not None


@pytest.mark.parametrize("label", ["x" * (MAX_LABEL + 1), "bell\a", "right\u202eleft", "two\nlines"],
                         ids=["long", "control", "bidi", "newline"])
def test_bad_labels_are_refused(accounts: Accounts, label: str) -> None:
    with pytest.raises(AccountError, match="at most 100 characters"):
        UserTokens(accounts).create("alice", Scope.READ, label)
    assert UserTokens(accounts).for_user("alice") == []


def test_a_label_of_the_longest_length_is_kept() -> None:
    assert check_label("é" * MAX_LABEL) == "é" * MAX_LABEL


def test_no_such_user(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="no such user"):
        UserTokens(accounts).create("nobody", Scope.READ, "x")
