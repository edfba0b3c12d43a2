"""Webhooks: a repository's receivers, their deliveries and every attempt (migration 0007).

A delivery is made once per (event, hook): its id, a UUID derived from both,
is the ``X-Hostd-Delivery`` header, and its body is built once and kept, so
a retry, a rerun of a job whose worker died, or an operator's redelivery
sends the same bytes under the same id. A receiver that sees an id twice
has seen the same event twice::

    hooks = Hooks(db)
    hook = hooks.add(RepoName("alice", "notes"), "https://ci.example.com/hook", secret="s3cret")
    hooks.for_repo(RepoName("alice", "notes"))       # [Hook(hook_id=1, ...)], secrets never shown
    for delivery, attempts in hooks.deliveries(hook.hook_id):
        ...

A hook whose attempts fail ``disable_after`` times in a row is disabled
(its waiting deliveries are cancelled, not lost: ``hostd hook redeliver``
sends one again) until ``enable`` turns it back on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from hostd.names import RepoName
from hostd.store.accounts import AccountError
from hostd.store.database import Connection, Database

#: The events a hook can subscribe to.
EVENTS: Final = ("push",)
#: The namespace of delivery ids: uuid5(this, "<event id>/<hook id>").
_DELIVERY_NS: Final = uuid.UUID("8f4c2c9e-5a1b-4f0e-9d57-6b0f3c1d2e7a")


class HookError(AccountError):
    """A hook that cannot be added or changed; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Hook:
    """One receiver of a repository's events."""

    hook_id: int
    repo: RepoName
    url: str
    events: tuple[str, ...]
    active: bool
    #: Attempts failed in a row (any delivery); reset by a success or ``enable``.
    failures: int
    disabled_reason: str | None
    created: datetime
    #: The HMAC key of ``X-Hostd-Signature-256``; empty: unsigned.
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one hook; ``body`` is exactly what every attempt sends."""

    delivery_id: str
    hook_id: int
    event: str
    created: datetime
    #: pending (being tried), delivered, failed (retries exhausted), cancelled (its hook was disabled).
    state: str
    attempts: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of a delivery, as ``hostd hook deliveries`` lists it."""

    at: datetime
    duration: float
    #: The HTTP status; None when no response came (refused, timed out, no connection).
    status: int | None
    #: None for a 2xx; else why it failed, in one line.
    error: str | None


def delivery_id(event_id: str, hook_id: int) -> str:
    """The delivery id of one event for one hook: the same however often it is computed."""
    return str(uuid.uuid5(_DELIVERY_NS, f"{event_id}/{hook_id}"))


def hook_lock(hook_id: int) -> str:
    """The lock of a hook's deliveries: one at a time, oldest first.

    A receiver that takes its whole timeout, or one that is down and backing
    off, holds up its own deliveries only, never another hook's; and a
    receiver gets a repository's pushes in the order they were made.
    """
    return f"hook:{hook_id}"


_HOOK = "id, repo_owner, repo_name, url, events, active, failures, disabled_reason, created, secret"
_DELIVERY = "id, hook_id, event, created, state, attempts, body"


def _hook(row: dict[str, Any]) -> Hook:
    return Hook(hook_id=row["id"], repo=RepoName(row["repo_owner"], row["repo_name"]), url=row["url"],
                events=tuple(row["events"]), active=row["active"], failures=row["failures"],
                disabled_reason=row["disabled_reason"], created=row["created"], secret=row["secret"])


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(delivery_id=str(row["id"]), hook_id=row["hook_id"], event=row["event"], created=row["created"],
                    state=row["state"], attempts=row["attempts"], body=bytes(row["body"]))


class Hooks:
    """The ``hooks``, ``hook_deliveries`` and ``hook_attempts`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, repo: RepoName, url: str, *, secret: str = "", events: Sequence[str] = ("push",)) -> Hook:
        """A new active hook; ``url`` must already be checked (hostd.work.outbound.parse_url)."""
        unknown = sorted(set(events) - set(EVENTS))
        if unknown or not events:
            raise HookError(f"unknown event {', '.join(unknown) or '(none)'}: hooks can subscribe to "
                            + ", ".join(EVENTS))
        with self.db.connection() as conn:
            if conn.execute("SELECT 1 FROM repos WHERE owner = %s AND name = %s",
                            (repo.owner, repo.name)).fetchone() is None:
                raise HookError(f"{repo} does not exist")
            row = conn.execute(
                f"INSERT INTO hooks (repo_owner, repo_name, url, secret, events) VALUES (%s, %s, %s, %s, %s)"
                f" RETURNING {_HOOK}", (repo.owner, repo.name, url, secret, list(dict.fromkeys(events)))).fetchone()
        assert row is not None
        return _hook(row)

    def for_repo(self, repo: RepoName) -> list[Hook]:
        with self.db.connection() as conn:
            rows = conn.execute(f"SELECT {_HOOK} FROM hooks WHERE repo_owner = %s AND repo_name = %s ORDER BY id",
                                (repo.owner, repo.name)).fetchall()
        return [_hook(row) for row in rows]

    def get(self, hook_id: int) -> Hook | None:
        with self.db.connection() as conn:
            row = conn.execute(f"SELECT {_HOOK} FROM hooks WHERE id = %s", (hook_id,)).fetchone()
        return None if row is None else _hook(row)

    def delete(self, hook_id: int) -> bool:
        """Remove a hook with its deliveries; False if there was none."""
        with self.db.connection() as conn:
            return conn.execute("DELETE FROM hooks WHERE id = %s", (hook_id,)).rowcount == 1

    def enable(self, hook_id: int) -> Hook | None:
        """Turn a disabled hook back on, its failure count at zero; None if there is no such hook."""
        with self.db.connection() as conn:
            row = conn.execute(f"UPDATE hooks SET active = true, failures = 0, disabled_reason = NULL"
                               f" WHERE id = %s RETURNING {_HOOK}", (hook_id,)).fetchone()
        return None if row is None else _hook(row)

    @staticmethod
    def subscribed(conn: Connection, repo: RepoName, event: str) -> list[Hook]:
        """The active hooks of ``repo`` for ``event``, read in the caller's transaction."""
        rows = conn.execute(f"SELECT {_HOOK} FROM hooks WHERE repo_owner = %s AND repo_name = %s AND active"
                            f" AND %s = ANY(events) ORDER BY id", (repo.owner, repo.name, event)).fetchall()
        return [_hook(row) for row in rows]

    @staticmethod
    def create_delivery(conn: Connection, event_id: str, hook: Hook, event: str, body: bytes) -> str | None:
        """The delivery of ``event_id`` to ``hook``, in the caller's transaction; None if it already exists."""
        row = conn.execute(
            "INSERT INTO hook_deliveries (id, hook_id, event, body) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            (delivery_id(event_id, hook.hook_id), hook.hook_id, event, body)).fetchone()
        return None if row is None else str(row["id"])

    def delivery(self, delivery: str) -> Delivery | None:
        try:
            uuid.UUID(delivery)
        except ValueError:
            return None
        with self.db.connection() as conn:
            row = conn.execute(f"SELECT {_DELIVERY} FROM hook_deliveries WHERE id = %s", (delivery,)).fetchone()
        return None if row is None else _delivery(row)

    def deliveries(self, hook_id: int, limit: int = 20) -> list[tuple[Delivery, list[Attempt]]]:
        """The newest ``limit`` deliveries of a hook, newest first, each with its attempts in order."""
        with self.db.connection() as conn:
            rows = conn.execute(f"SELECT {_DELIVERY} FROM hook_deliveries WHERE hook_id = %s"
                                f" ORDER BY created DESC, id LIMIT %s", (hook_id, limit)).fetchall()
            ids = [row["id"] for row in rows]
            attempts = conn.execute("SELECT delivery_id, at, duration, status, error FROM hook_attempts"
                                    " WHERE delivery_id = ANY(%s) ORDER BY id", (ids,)).fetchall()
        by_delivery: dict[str, list[Attempt]] = {str(i): [] for i in ids}
        for a in attempts:
            by_delivery[str(a["delivery_id"])].append(Attempt(a["at"], a["duration"], a["status"], a["error"]))
        return [(_delivery(row), by_delivery[str(row["id"])]) for row in rows]

    def record(self, delivery: Delivery, *, duration: float, status: int | None, error: str | None,
               final: bool, disable_after: int) -> Hook | None:
        """Record one attempt, and what it means for the delivery and its hook, in one transaction.

        A success delivers it and resets the hook's failure count. A failure
        counts against the hook; the ``disable_after``-th in a row disables
        it and cancels its other waiting deliveries. ``final``: no retry is
        left, the delivery has failed. Returns the hook as it is now (None
        if it was deleted meanwhile).
        """
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO hook_attempts (delivery_id, duration, status, error) VALUES (%s, %s, %s, %s)",
                         (delivery.delivery_id, duration, status, error))
            state = "delivered" if error is None else "failed" if final else "pending"
            conn.execute("UPDATE hook_deliveries SET attempts = attempts + 1, state = %s WHERE id = %s",
                         (state, delivery.delivery_id))
            if error is None:
                row = conn.execute(f"UPDATE hooks SET failures = 0 WHERE id = %s RETURNING {_HOOK}",
                                   (delivery.hook_id,)).fetchone()
                return None if row is None else _hook(row)
            row = conn.execute(
                f"UPDATE hooks SET failures = failures + 1,"
                f" active = active AND failures + 1 < %(limit)s,"
                f" disabled_reason = CASE WHEN active AND failures + 1 >= %(limit)s"
                f"   THEN %(reason)s ELSE disabled_reason END"
                f" WHERE id = %(hook)s RETURNING {_HOOK}",
                {"limit": disable_after, "hook": delivery.hook_id,
                 "reason": f"{disable_after} failed attempts in a row; the last: {error}"}).fetchone()
            hook = None if row is None else _hook(row)
            if hook is not None and not hook.active:
                conn.execute("UPDATE hook_deliveries SET state = 'cancelled' WHERE hook_id = %s AND state = 'pending'"
                             " AND id <> %s", (hook.hook_id, delivery.delivery_id))
            return hook

    def cancel(self, delivery: Delivery) -> None:
        """Its hook is disabled or gone: the delivery stops being tried (redeliver starts it again)."""
        with self.db.connection() as conn:
            conn.execute("UPDATE hook_deliveries SET state = 'cancelled' WHERE id = %s AND state = 'pending'",
                         (delivery.delivery_id,))

    @staticmethod
    def reopen(conn: Connection, delivery: Delivery) -> None:
        """Make a delivery pending again (a redelivery), in the caller's transaction."""
        conn.execute("UPDATE hook_deliveries SET state = 'pending' WHERE id = %s", (delivery.delivery_id,))
