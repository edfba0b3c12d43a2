"""The transport-neutral decision: may this identity perform this target, and what is it told?

:class:`~singlemalt.middleware.SingleMalt` answers HTTP requests; a server
that is not HTTP (an SSH gateway, a job runner) has already authenticated
its caller in its own way and only needs the decision, and the words to
refuse with. :func:`judge` is that decision, the same one the middleware
makes after verifying credentials: the authorizer is asked, an
:class:`~singlemalt.authorize.Unavailable` becomes a refusal that tells the
client to retry, a read-only scope cannot write, and a denial is told only
as far as the identity may know the repository exists::

    verdict = judge(authorize, Identity("alice", method="ssh-key", scope=Scope.WRITE), target)
    if verdict.allowed:
        run(verdict.decision.resource)
    else:
        print(verdict.message, file=stderr)    # "You have read-only access to ..." or "not found"

The middleware renders the same :class:`Verdict` as 401, 403, 404 or 503
(``challenge.py``); other transports render :attr:`Verdict.message`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from singlemalt.authorize import Allowed, Authorizer, Denied, Unavailable
from singlemalt.identity import TOKEN, Identity, Scope
from singlemalt.target import Action, Target

#: What a refusal that hides the repository says, whatever the reason.
NOT_FOUND: Final = "not found"


class Outcome(enum.Enum):
    """How a decision ends; the values are the middleware's log outcomes."""

    ALLOWED = "allowed"
    #: Anonymous and not allowed: ask for credentials (401 over HTTP).
    CHALLENGE = "challenge"
    #: Refused, and the identity may know why (403 over HTTP).
    FORBIDDEN = "forbidden"
    #: Refused without saying whether the repository exists (404 over HTTP).
    NOT_FOUND = "not-found"
    #: Cannot decide now; retry after ``retry_after`` seconds (503 over HTTP).
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision and how to tell it.

    ``reason`` is for the log (it may name a repository the client must not
    learn about); ``message`` is what the client may be told. ``decision``
    is the authorizer's :class:`Allowed` when the outcome is ``ALLOWED``.
    """

    outcome: Outcome
    reason: str
    message: str
    decision: Allowed | None = None
    retry_after: int | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


def judge(authorize: Authorizer, identity: Identity | None, target: Target) -> Verdict:
    """Ask ``authorize`` about ``target`` for ``identity`` (None: anonymous) and apply its scope."""
    try:
        decision = authorize(identity, target)
    except Unavailable as error:
        return Verdict(Outcome.UNAVAILABLE, error.reason, error.reason, retry_after=error.retry_after)
    if not isinstance(decision, Allowed | Denied):
        # Default deny: only an explicit Allowed lets a request through.
        decision = Denied(f"authorizer returned {type(decision).__name__}, not a decision")
    if identity is not None and identity.scope is Scope.READ and target.action is Action.WRITE:
        if isinstance(decision, Allowed) or decision.reveal:
            refusal = read_only_message(identity)
            return Verdict(Outcome.FORBIDDEN, refusal, refusal)
        return Verdict(Outcome.NOT_FOUND, f"{read_only_message(identity)}; {decision.reason}", NOT_FOUND)
    if isinstance(decision, Allowed):
        return Verdict(Outcome.ALLOWED, decision.reason, decision.reason, decision=decision)
    if identity is None:
        return Verdict(Outcome.CHALLENGE, decision.reason, NOT_FOUND)
    if decision.reveal:
        return Verdict(Outcome.FORBIDDEN, decision.reason, decision.reason)
    return Verdict(Outcome.NOT_FOUND, decision.reason, NOT_FOUND)


def read_only_message(identity: Identity) -> str:
    """What a read-only credential is told when it tries to write: ``token is read-only``, ``deploy key is ...``."""
    what = "token" if identity.method == TOKEN else identity.method.replace("-", " ")
    return f"{what} is read-only"
