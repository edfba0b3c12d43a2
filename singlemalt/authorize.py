"""Authorization decisions and the contract an authorizer fulfils.

An authorizer answers one question: may this identity (``None`` for an
anonymous request) perform this :class:`~singlemalt.target.Target`?  The
answer carries a reason for the log, and a denial says whether the identity
may know the repository exists, so the middleware can answer 403 with the
reason instead of a 404 that hides it::

    def authorize(identity, target):
        if target.action is Action.READ:
            return Allowed("public")
        if identity is not None and target.repository.startswith(identity.username + "/"):
            return Allowed("owner")
        return Denied("not the owner", reveal=True)

A plain function satisfies :class:`Authorizer`.  Default deny: an
authorizer should end with a :class:`Denied`, not an :class:`Allowed`.

An authorizer that had to look the repository up to decide can hand what it
found to the app, so the app does not look it up again::

    repo = repositories.get(target.repository)
    ...
    return Allowed("owner", resource=repo)

The app reads it as ``environ["singlemalt.decision"].resource``.

When the answer depends on something that is down (the database behind the
credential store or the authorizer), neither allowing nor denying is right:
raise :class:`Unavailable` from the store or the authorizer, and the
middleware answers 503 with ``Retry-After`` and the reason::

    except DatabaseDown:
        raise Unavailable("the database is down; try again shortly", retry_after=5) from None

It is not a failed login (the throttle does not count it) and not a
decision: the client is told to come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from singlemalt.identity import Identity
from singlemalt.target import Target


@dataclass(frozen=True, slots=True)
class Allowed:
    """Let the request through; ``reason`` goes to the log.

    ``resource`` is whatever the authorizer resolved the target to (a
    repository record, say), passed on to the app untouched; it is left out
    of the repr, which goes to logs.
    """

    reason: str
    resource: object = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Denied:
    """Refuse the request.

    ``reveal=True`` means the identity may know the repository exists, so a
    refusal is a 403 carrying ``reason`` (shown to the git or hg user);
    ``reveal=False`` hides it behind a 404.
    """

    reason: str
    reveal: bool = False


Decision = Allowed | Denied


class Unavailable(Exception):
    """Cannot decide now; raised by a credential store or an authorizer.

    The middleware answers 503 with ``reason`` (shown to the git or hg user)
    and ``Retry-After: retry_after`` (seconds), logs it, and does not count
    it as a failed login.
    """

    def __init__(self, reason: str, *, retry_after: int = 5) -> None:
        if retry_after <= 0:
            raise ValueError("retry_after must be positive")
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Authorizer(Protocol):
    """Decides whether an identity may perform a target."""

    def __call__(self, identity: Identity | None, target: Target) -> Decision: ...
