"""judge(): the middleware's decision for other transports, and what each outcome tells the caller."""

from __future__ import annotations

import pytest

from singlemalt import Action, Allowed, Denied, Identity, Outcome, Scope, Target, Unavailable, judge
from singlemalt.judge import NOT_FOUND

READ = Target("alice/proj.git", Action.READ, "git-upload-pack")
WRITE = Target("alice/proj.git", Action.WRITE, "git-receive-pack")
ALICE = Identity("alice", method="ssh-key", scope=Scope.WRITE)


def test_allowed_carries_the_authorizers_decision() -> None:
    decision = Allowed("owner", resource="row")
    verdict = judge(lambda identity, target: decision, ALICE, WRITE)
    assert verdict.allowed and verdict.outcome is Outcome.ALLOWED and verdict.decision is decision


@pytest.mark.parametrize(("identity", "denial", "outcome", "message"), [
    (None, Denied("private", reveal=False), Outcome.CHALLENGE, NOT_FOUND),
    (None, Denied("private", reveal=True), Outcome.CHALLENGE, NOT_FOUND),
    (ALICE, Denied("You have read-only access to alice/proj.", reveal=True), Outcome.FORBIDDEN,
     "You have read-only access to alice/proj."),
    (ALICE, Denied("no access to alice/proj"), Outcome.NOT_FOUND, NOT_FOUND),
])
def test_a_denial_says_only_what_the_caller_may_know(identity: Identity | None, denial: Denied, outcome: Outcome,
                                                     message: str) -> None:
    verdict = judge(lambda i, t: denial, identity, WRITE)
    assert (verdict.outcome, verdict.message, verdict.reason) == (outcome, message, denial.reason)
    assert not verdict.allowed and verdict.decision is None


@pytest.mark.parametrize(("method", "told"), [("token", "token is read-only"),
                                              ("deploy-key", "deploy key is read-only")])
def test_a_read_only_credential_cannot_write(method: str, told: str) -> None:
    reader = Identity("alice", method=method, scope=Scope.READ)
    allowed = judge(lambda i, t: Allowed("owner"), reader, WRITE)
    assert (allowed.outcome, allowed.message) == (Outcome.FORBIDDEN, told)
    revealed = judge(lambda i, t: Denied("read-only access", reveal=True), reader, WRITE)
    assert (revealed.outcome, revealed.message) == (Outcome.FORBIDDEN, told)
    hidden = judge(lambda i, t: Denied("no access"), reader, WRITE)
    assert (hidden.outcome, hidden.message) == (Outcome.NOT_FOUND, NOT_FOUND)
    assert judge(lambda i, t: Allowed("owner"), reader, READ).allowed


def test_an_authorizer_that_cannot_decide_asks_for_a_retry() -> None:
    def down(identity: Identity | None, target: Target) -> Allowed:
        raise Unavailable("the database is down", retry_after=7)

    verdict = judge(down, ALICE, WRITE)
    assert (verdict.outcome, verdict.message, verdict.retry_after) == (Outcome.UNAVAILABLE, "the database is down", 7)


def test_anything_but_a_decision_is_a_denial() -> None:
    verdict = judge(lambda i, t: True, ALICE, READ)  # type: ignore[arg-type, return-value]
    assert verdict.outcome is Outcome.NOT_FOUND and "not a decision" in verdict.reason
