"""A user's own access tokens, as the web's settings page manages them: with a label, and only their own.

The CLI (``hostd token``, :class:`~hostd.store.accounts.Accounts`) is the
operator's: any user's token by its id. A signed-in user may list, create
and revoke their own alone; a token id of someone else's is answered like
one that does not exist::

    tokens = UserTokens(accounts)
    issued = tokens.create("alice", Scope.READ, "ci")   # issued.token: shown once, never stored
    tokens.for_user("alice")                            # [UserToken(...)], never a secret
    tokens.revoke("alice", issued.token_id)             # True; False if not alice's

There is no "last used" to show: verifying a token writes nothing (a warm
clone makes no query at all, :mod:`hostd.store.records`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

from hostd.names import normalize_name
from hostd.store.accounts import AccountError, Accounts
from singlemalt import IssuedToken, Scope

#: The longest label (the column's CHECK says the same).
MAX_LABEL: Final = 100


@dataclass(frozen=True, slots=True)
class UserToken:
    """One of a user's tokens, as their settings page lists it: never the secret or its hash."""

    token_id: str
    label: str
    scope: str
    created: float
    expires_at: float | None
    revoked: bool


def check_label(text: str) -> str:
    """The label, stripped; AccountError if it is too long or has control or invisible formatting characters."""
    label = text.strip()
    if len(label) > MAX_LABEL or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in label):
        raise AccountError(f"a token's label is at most {MAX_LABEL} characters, with no control characters")
    return label


class UserTokens:
    """The ``tokens`` table, seen by the user the tokens belong to."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def create(self, username: str, scope: Scope, label: str) -> IssuedToken:
        """A new token of ``username``'s with this label; show ``.token`` once."""
        return self.accounts.create_token(username, scope, None, label=check_label(label))

    def for_user(self, username: str) -> list[UserToken]:
        """The user's tokens, newest first (revoked ones too: they say what stopped working)."""
        with self.accounts.db.connection() as conn:
            rows = conn.execute(
                "SELECT id, label, scope, created, expires_at, revoked FROM tokens WHERE username = %s"
                " ORDER BY created DESC, id",
                (normalize_name(username),),
            ).fetchall()
        return [UserToken(r["id"], r["label"], r["scope"], r["created"], r["expires_at"], bool(r["revoked"]))
                for r in rows]

    def revoke(self, username: str, token_id: str) -> bool:
        """Revoke one of the user's tokens; False if they have no such token (someone else's included)."""
        # Security: ownership first; a token never changes owner, so the check holds for the revoke.
        if not any(token.token_id == token_id for token in self.for_user(username)):
            return False
        self.accounts.revoke_token(token_id)
        return True
