"""Webhooks in PostgreSQL: hooks, deliveries made once per (event, hook), attempts, disabling after failures."""

from __future__ import annotations

import uuid

import pytest

from hostd.names import RepoName
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from hostd.store.hooks import HookError, Hooks, delivery_id

REPO = RepoName("alice", "notes")


@pytest.fixture
def hooks(database: Database) -> Hooks:
    accounts = Accounts(database)
    accounts.add_user("alice", "password-alice")
    accounts.add_repo(REPO, "git", False)
    return Hooks(database)


def _deliver(hooks: Hooks, event: str = "e1") -> str:
    (hook,) = hooks.for_repo(REPO)
    with hooks.db.transaction() as conn:
        made = Hooks.create_delivery(conn, event, hook, "push", b'{"x":1}')
    assert made is not None
    return made


def test_a_hook_is_listed_without_its_secret(hooks: Hooks) -> None:
    hook = hooks.add(REPO, "https://ci.example.com/hook", secret="s3cret")
    assert hooks.for_repo(REPO) == [hook] and hook.events == ("push",) and hook.active
    assert "s3cret" not in repr(hook)


@pytest.mark.parametrize(("repo", "events", "reason"), [
    (RepoName("alice", "nothing"), ("push",), "does not exist"),
    (REPO, ("tag",), "unknown event tag"),
    (REPO, (), "unknown event (none)"),
], ids=["no-repo", "unknown-event", "no-event"])
def test_a_hook_that_cannot_be_is_refused(hooks: Hooks, repo: RepoName, events: tuple[str, ...], reason: str) -> None:
    with pytest.raises(HookError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        hooks.add(repo, "https://ci.example.com/hook", events=events)


def test_a_delivery_id_is_the_same_for_the_same_event_and_hook(hooks: Hooks) -> None:
    hook = hooks.add(REPO, "https://ci.example.com/hook")
    made = _deliver(hooks, "event-1")
    assert made == delivery_id("event-1", hook.hook_id) == str(uuid.UUID(made))
    with hooks.db.transaction() as conn:  # the push job run again: no second delivery
        assert Hooks.create_delivery(conn, "event-1", hook, "push", b"other") is None
    found = hooks.delivery(made)
    assert found is not None and found.body == b'{"x":1}' and found.state == "pending"
    assert delivery_id("event-2", hook.hook_id) != made


def test_attempts_are_kept_in_order_and_a_success_resets_the_failures(hooks: Hooks) -> None:
    hook = hooks.add(REPO, "https://ci.example.com/hook")
    delivery = hooks.delivery(_deliver(hooks))
    assert delivery is not None
    after = hooks.record(delivery, duration=0.2, status=500, error="HTTP 500", final=False, disable_after=5)
    assert after is not None and after.failures == 1 and after.active
    after = hooks.record(delivery, duration=0.1, status=200, error=None, final=False, disable_after=5)
    assert after is not None and after.failures == 0
    ((shown, attempts),) = hooks.deliveries(hook.hook_id)
    assert shown.state == "delivered" and shown.attempts == 2
    assert [(a.status, a.error) for a in attempts] == [(500, "HTTP 500"), (200, None)]


def test_a_hook_failing_too_often_is_disabled_until_enabled(hooks: Hooks) -> None:
    hook = hooks.add(REPO, "https://ci.example.com/hook")
    first, second = (hooks.delivery(_deliver(hooks, event)) for event in ("e1", "e2"))
    assert first is not None and second is not None
    for _ in range(2):
        now = hooks.record(first, duration=10.0, status=None, error="timed out after 10 s", final=False,
                           disable_after=3)
        assert now is not None and now.active
    now = hooks.record(first, duration=10.0, status=None, error="timed out after 10 s", final=False, disable_after=3)
    assert now is not None and not now.active and now.disabled_reason is not None
    assert "3 failed attempts in a row" in now.disabled_reason and "timed out" in now.disabled_reason
    waiting = hooks.delivery(second.delivery_id)
    assert waiting is not None and waiting.state == "cancelled"  # kept: redeliver can send it
    enabled = hooks.enable(hook.hook_id)
    assert enabled is not None and enabled.active and enabled.failures == 0 and enabled.disabled_reason is None


def test_the_last_attempt_fails_the_delivery(hooks: Hooks) -> None:
    hooks.add(REPO, "https://ci.example.com/hook")
    delivery = hooks.delivery(_deliver(hooks))
    assert delivery is not None
    hooks.record(delivery, duration=0.1, status=404, error="HTTP 404", final=True, disable_after=50)
    again = hooks.delivery(delivery.delivery_id)
    assert again is not None and again.state == "failed"


def test_deleting_a_hook_or_its_repository_deletes_its_deliveries(hooks: Hooks) -> None:
    hook = hooks.add(REPO, "https://ci.example.com/hook")
    made = _deliver(hooks)
    assert hooks.delivery("not-a-uuid") is None
    assert hooks.delete(hook.hook_id) and not hooks.delete(hook.hook_id)
    assert hooks.delivery(made) is None
    hooks.add(REPO, "https://ci.example.com/other")
    Accounts(hooks.db).delete_repo(REPO)
    assert hooks.for_repo(REPO) == []
