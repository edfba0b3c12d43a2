"""Who a request is: the value the verifier produces and the authorizer consumes.

An :class:`Identity` is only ever built by :class:`singlemalt.verify.Verifier`
(or by :class:`singlemalt.middleware.SingleMalt` when a front server's
``REMOTE_USER`` is explicitly trusted), so holding one means the credentials
were checked.  It carries no secret, so it is safe to log and to put in the
WSGI environ::

    >>> from singlemalt.identity import Identity, Scope
    >>> Identity("alice", method="token", scope=Scope.READ, token_id="abc")
    Identity(username='alice', method='token', scope=<Scope.READ: 'read'>, token_id='abc')
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

#: ``Identity.method`` for a username and password checked against the store.
PASSWORD: Final = "password"
#: ``Identity.method`` for an access token (``smt_...``), as Bearer or Basic password.
TOKEN: Final = "token"
#: ``Identity.method`` for a ``REMOTE_USER`` set by a trusted front server.
REMOTE_USER: Final = "remote-user"


class Scope(enum.Enum):
    """What an identity may do at most; authorization can only narrow it.

    Passwords always carry ``WRITE``; tokens carry the scope they were issued
    with, so a read-only deploy token cannot push even where its owner could.
    """

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user, and how they proved it."""

    username: str
    method: str
    scope: Scope
    token_id: str | None = None
