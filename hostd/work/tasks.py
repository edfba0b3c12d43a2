"""The jobs the queue workers run: a push's event, webhook deliveries, background maintenance.

Each is a task of :data:`app`, named as :mod:`hostd.store.queue` defers it,
and run by the queue pool (hostd/work/runner.py), which opens the app on a
connection pool of its own and gives the jobs a :class:`Worksite`::

    async with app.open_async(pool):
        await app.run_worker_async(additional_context={"worksite": Worksite.build(settings, db)})

- ``hostd.push`` (one per push, deferred with its push-log entry): builds
  the delivery body once, makes one delivery per subscribed hook and defers
  them, in one transaction; counts the push towards the repository's next
  maintenance. Run again (a worker died), it makes no second delivery: a
  delivery's id is derived from the event and the hook.
- ``hostd.deliver``: one POST; a failure is retried later with exponential
  backoff and jitter (:mod:`hostd.work.backoff`), the same body under the
  same ``X-Hostd-Delivery`` id. A hook's deliveries run one at a time, in
  order (:func:`hostd.store.hooks.hook_lock`).
- ``hostd.maintain``: ``hostd maintain`` for one repository, one at a time
  per repository (procrastinate's ``lock``), at most one waiting
  (``queueing_lock``).

Jobs that need a repository's files run on its shard's queue; one that
finds its repository moved meanwhile is deferred again to the new shard's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext

from hostd.names import RepoName
from hostd.ops.maintain import Report, maintain_git, maintain_hg
from hostd.settings import Settings
from hostd.store.accounts import Accounts
from hostd.store.database import Connection, Database
from hostd.store.hooks import Delivery, Hook, Hooks, hook_lock
from hostd.store.queue import DELIVER_TASK, HOOKS_QUEUE, MAINTAIN_TASK, PUSH_TASK, defer, repo_queue
from hostd.store.storage import Storage
from hostd.work import outbound
from hostd.work.backoff import RETRY, RetryLater, delay
from hostd.work.payload import push_payload

log = logging.getLogger(__name__)
#: The tasks; opened by each worker process on its own pool (never here, at import).
app = procrastinate.App(connector=procrastinate.PsycopgConnector())


@dataclass(frozen=True, slots=True)
class Worksite:
    """What the jobs of one worker process share: settings and stores, built once."""

    settings: Settings
    db: Database
    accounts: Accounts
    hooks: Hooks
    storage: Storage

    @classmethod
    def build(cls, settings: Settings, db: Database) -> Worksite:
        return cls(settings, db, Accounts(db), Hooks(db), Storage(settings.repo_root))


def _site(context: JobContext) -> Worksite:
    site = context.additional_context["worksite"]
    assert isinstance(site, Worksite)
    return site


def _here(site: Worksite, conn: Connection, repo: RepoName, task: str, args: dict[str, Any]) -> str | None:
    """The repository's vcs if it is on this host's shard; else None, the job deferred to where it is now."""
    found = site.accounts.repo(repo)
    if found is None:
        log.info("%s: %s no longer exists; nothing to do", task, repo)
        return None
    if found.shard != site.settings.shard:
        defer(conn, task, repo_queue(found.shard), **args)
        log.info("%s: %s moved to shard %s; the job follows it", task, repo, found.shard)
        return None
    return found.vcs


@app.task(name=PUSH_TASK, pass_context=True, retry=RETRY)
def push(context: JobContext, *, event: str, repo: str, pusher: str, at: float,
         updates: list[list[str]]) -> None:
    """Fan a push out to its hooks, and count it towards the repository's maintenance."""
    site = _site(context)
    ref = RepoName(*repo.split("/", 1))
    args = {"event": event, "repo": repo, "pusher": pusher, "at": at, "updates": updates}
    with site.db.transaction() as conn:
        vcs = _here(site, conn, ref, PUSH_TASK, args)
        if vcs is None:
            return
        hooks = Hooks.subscribed(conn, ref, "push")
    directory = site.storage.path(ref, vcs)
    body = b""
    if hooks:
        payload = push_payload(vcs=vcs, repo_dir=directory, owner=ref.owner, name=ref.name, pusher=pusher, at=at,
                               updates=[(r, old, new) for r, old, new in updates], base_url=site.settings.base_url)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    made = []
    with site.db.transaction() as conn:
        for hook in hooks:
            delivery = Hooks.create_delivery(conn, event, hook, "push", body)
            if delivery is not None:
                defer(conn, DELIVER_TASK, HOOKS_QUEUE, lock=hook_lock(hook.hook_id), delivery=delivery)
                made.append(delivery)
        _count_push(site, conn, ref, vcs, directory)
    if hooks:
        log.info("push %s to %s by %s: %d deliveries (%s)", event, ref, pusher, len(made),
                 ", ".join(made) or "made before")


def _count_push(site: Worksite, conn: Connection, repo: RepoName, vcs: str, directory: Path) -> None:
    row = conn.execute("INSERT INTO repo_upkeep (owner, name, pushes) VALUES (%s, %s, 1)"
                       " ON CONFLICT (owner, name) DO UPDATE SET pushes = repo_upkeep.pushes + 1 RETURNING pushes",
                       (repo.owner, repo.name)).fetchone()
    pushes = 0 if row is None else int(row["pushes"])
    background = site.settings.background
    loose = loose_objects(directory) if vcs == "git" else 0
    if pushes >= background.maintain_pushes or loose >= background.maintain_loose_objects:
        key = f"maintain:{repo}"
        if defer(conn, MAINTAIN_TASK, repo_queue(site.settings.shard), lock=key, queueing_lock=key,
                 repo=str(repo)) is not None:
            log.info("%s: maintenance queued (%d pushes, about %d loose objects)", repo, pushes, loose)


def loose_objects(git_dir: Path) -> int:
    """About how many loose objects a git repository holds: git's own estimate (``gc --auto``) from one directory."""
    try:
        return 256 * sum(1 for entry in (git_dir / "objects" / "17").iterdir() if len(entry.name) == 38)
    except OSError:
        return 0


@app.task(name=MAINTAIN_TASK, pass_context=True, retry=RETRY)
def maintain(context: JobContext, *, repo: str) -> None:
    """``hostd maintain OWNER/NAME``, off the request path."""
    site = _site(context)
    ref = RepoName(*repo.split("/", 1))
    with site.db.transaction() as conn:
        vcs = _here(site, conn, ref, MAINTAIN_TASK, {"repo": repo})
        row = conn.execute("SELECT pushes FROM repo_upkeep WHERE owner = %s AND name = %s",
                           (ref.owner, ref.name)).fetchone()
    if vcs is None:
        return
    report = Report(str(ref))
    (maintain_git if vcs == "git" else maintain_hg)(site.storage.path(ref, vcs), report)
    with site.db.connection() as conn:
        # The pushes counted before it started are done with; those made meanwhile count towards the next.
        conn.execute("UPDATE repo_upkeep SET pushes = greatest(pushes - %s, 0), maintained = now()"
                     " WHERE owner = %s AND name = %s", (0 if row is None else row["pushes"], ref.owner, ref.name))
    log.info("%s maintained: %s", ref, "; ".join(report.actions) or "nothing to do")


def headers(delivery: Delivery, hook: Hook) -> dict[str, str]:
    """The headers of every attempt of ``delivery`` (outbound.post adds Content-Type: application/json)."""
    sent = {"X-Hostd-Event": delivery.event, "X-Hostd-Delivery": delivery.delivery_id}
    if hook.secret:
        sent["X-Hostd-Signature-256"] = outbound.sign(hook.secret.encode(), delivery.body)
    return sent


@app.task(name=DELIVER_TASK, pass_context=True, retry=RETRY)
def deliver(context: JobContext, *, delivery: str) -> None:
    """One attempt; RetryLater (with its delay) when it failed and may be tried again."""
    site = _site(context)
    found = site.hooks.delivery(delivery)
    if found is None or found.state != "pending":
        return  # delivered, given up, cancelled, or deleted with its hook
    hook = site.hooks.get(found.hook_id)
    if hook is None:
        return
    if not hook.active:
        site.hooks.cancel(found)
        return
    background = site.settings.background
    response = outbound.post(hook.url, found.body, headers(found, hook), allow=background.hook_allow_nets,
                             timeout=background.hook_timeout)
    attempt = found.attempts + 1
    final = attempt >= background.hook_attempts  # this attempt is the last one allowed
    now = site.hooks.record(found, duration=response.duration, status=response.status, error=response.error,
                            final=final, disable_after=background.hook_disable_after)
    if response.ok:
        log.info("delivery %s to hook %d: %d in %.0f ms (attempt %d)", delivery, hook.hook_id, response.status or 0,
                 response.duration * 1000, attempt)
        return
    if now is not None and not now.active:
        log.warning("hook %d of %s disabled: %s", hook.hook_id, hook.repo, now.disabled_reason)
        return
    if final:
        log.warning("delivery %s to hook %d gave up after %d attempts: %s", delivery, hook.hook_id, attempt,
                    response.error)
        return
    wait = delay(found.attempts, background.hook_retry_base, background.hook_retry_max)
    log.info("delivery %s to hook %d: attempt %d failed: %s; next in %.1f s", delivery, hook.hook_id, attempt,
             response.error, wait)
    raise RetryLater(f"hook {hook.hook_id}: {response.error}", wait)
