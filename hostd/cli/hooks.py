"""``hostd hook ...`` and ``hostd queue status``: webhooks, and the durable queue that delivers them.

::

    hostd hook add alice/notes https://ci.example.com/hook --secret s3cret
    hostd hook add alice/notes https://ci.example.com/hook --secret - < secret.txt
    hostd hook list alice/notes
    hostd hook deliveries 3            # each delivery, each attempt: time, status, duration, error
    hostd hook redeliver 1b4e28ba-2fa1-11d2-883f-0016d3cca427
    hostd hook enable 3                # after it was disabled for failing
    hostd hook del 3
    hostd queue status

A hook's URL is checked when it is added, as every delivery checks it
again: it must resolve to global addresses only, unless the operator allows
a network (``HOSTD_HOOK_ALLOW_NETS``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from hostd.cli.args import SubParsers, add_command, add_group, positive_int, repo_name
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.store.hooks import EVENTS, Delivery, Hook, HookError, Hooks, hook_lock
from hostd.store.queue import DELIVER_TASK, HOOKS_QUEUE, defer, live_workers, queue_stats
from hostd.work.outbound import HookURLError, parse_url, resolve

#: The longest secret read from stdin.
MAX_SECRET = 1024


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _line(hook: Hook) -> str:
    state = "active" if hook.active else f"DISABLED ({hook.disabled_reason})"
    return "\t".join([str(hook.hook_id), hook.url, ",".join(hook.events), state,
                      f"{hook.failures} failures in a row", "signed" if hook.secret else "unsigned",
                      "created " + _when(hook.created)])


def cmd_hook_add(args: argparse.Namespace) -> None:
    """Add a hook: every push to the repository is POSTed to URL."""
    installation = open_installation(args)
    allow = installation.settings.background.hook_allow_nets
    try:
        url = parse_url(args.url)
        resolve(url, allow)
    except HookURLError as error:
        raise CommandError(f"{args.url}: {error}") from None
    secret = args.secret or ""
    if secret == "-":
        secret = sys.stdin.read(MAX_SECRET + 1).strip()
        if len(secret) > MAX_SECRET:
            raise CommandError(f"the secret is longer than {MAX_SECRET} characters")
    try:
        hook = Hooks(installation.database).add(args.repo, str(url), secret=secret, events=args.events)
    except HookError as error:
        raise CommandError(str(error)) from None
    print(f"added hook {hook.hook_id} of {hook.repo}: {', '.join(hook.events)} to {hook.url}"
          + ("" if secret else " (unsigned: no --secret)"))


def cmd_hook_list(args: argparse.Namespace) -> None:
    """One line per hook: id, URL, events, state, failures, signed or not, creation time."""
    for hook in Hooks(open_installation(args).database).for_repo(args.repo):
        print(_line(hook))


def cmd_hook_del(args: argparse.Namespace) -> None:
    """Delete a hook, its deliveries and their history."""
    if not Hooks(open_installation(args).database).delete(args.hook_id):
        raise CommandError(f"no such hook: {args.hook_id}")
    print(f"deleted hook {args.hook_id}")


def cmd_hook_enable(args: argparse.Namespace) -> None:
    """Turn a hook that was disabled for failing back on (the deliveries it missed: hook redeliver)."""
    hook = Hooks(open_installation(args).database).enable(args.hook_id)
    if hook is None:
        raise CommandError(f"no such hook: {args.hook_id}")
    print(f"enabled hook {hook.hook_id} of {hook.repo}")


def _delivery_line(delivery: Delivery) -> str:
    return "\t".join([delivery.delivery_id, _when(delivery.created), delivery.event, delivery.state,
                      f"{delivery.attempts} attempts"])


def cmd_hook_deliveries(args: argparse.Namespace) -> None:
    """The newest deliveries of a hook, each with every attempt: time, HTTP status, duration, error."""
    hooks = Hooks(open_installation(args).database)
    if hooks.get(args.hook_id) is None:
        raise CommandError(f"no such hook: {args.hook_id}")
    for delivery, attempts in hooks.deliveries(args.hook_id, args.limit):
        print(_delivery_line(delivery))
        for attempt in attempts:
            status = "-" if attempt.status is None else str(attempt.status)
            print(f"  {_when(attempt.at)}\t{status}\t{attempt.duration * 1000:.0f} ms\t{attempt.error or 'ok'}")


def cmd_hook_redeliver(args: argparse.Namespace) -> None:
    """Send a delivery again: the same body, under the same X-Hostd-Delivery id."""
    installation = open_installation(args)
    hooks = Hooks(installation.database)
    delivery = hooks.delivery(args.delivery)
    if delivery is None:
        raise CommandError(f"no such delivery: {args.delivery}")
    hook = hooks.get(delivery.hook_id)
    if hook is None or not hook.active:
        raise CommandError(f"hook {delivery.hook_id} is disabled: hostd hook enable {delivery.hook_id} first")
    with installation.database.transaction() as conn:
        Hooks.reopen(conn, delivery)
        defer(conn, DELIVER_TASK, HOOKS_QUEUE, lock=hook_lock(hook.hook_id), delivery=delivery.delivery_id)
    print(f"delivery {delivery.delivery_id} queued again for hook {hook.hook_id} ({hook.url})")


def cmd_queue_status(args: argparse.Namespace) -> None:
    """Each queue: jobs waiting and the age of the oldest, running, backing off, failed; live workers."""
    installation = open_installation(args)
    background = installation.settings.background
    stats = queue_stats(installation.database)
    print("queue\twaiting\toldest\trunning\tscheduled\tfailed")
    for line in stats:
        print(f"{line.queue}\t{line.waiting}\t{line.oldest_age:.0f}s\t{line.running}\t{line.scheduled}\t{line.failed}")
    print(f"workers: {live_workers(installation.database, background.stalled_after)} beating"
          f" (none for {background.stalled_after:g} s counts as dead)")
    for line in stats:
        if line.oldest_age > background.warn_age:
            print(f"warning: queue {line.queue} is late: its oldest job has waited {line.oldest_age:.0f} s"
                  f" (HOSTD_QUEUE_WARN_AGE={background.warn_age:g})")


def register(top: SubParsers) -> None:
    """Add ``hook`` and ``queue`` to the ``hostd`` parser."""
    group = add_group(top, "hook", "manage webhooks: a POST to a URL after every push",
                      "hostd hook add alice/notes https://ci.example.com/hook --secret s3cret")
    p = add_command(group, "add", cmd_hook_add, "add a webhook to a repository",
                    "hostd hook add alice/notes https://ci.example.com/hook --secret s3cret")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    p.add_argument("url", metavar="URL", help="where to POST (http or https)")
    p.add_argument("--secret", metavar="S", help="HMAC key of X-Hostd-Signature-256 ('-': read it from stdin)")
    p.add_argument("--events", type=lambda text: [e.strip() for e in text.split(",") if e.strip()],
                   default=list(EVENTS), metavar="E[,E]", help=f"what to send (default and only: {','.join(EVENTS)})")
    add_command(group, "list", cmd_hook_list, "list a repository's webhooks", "hostd hook list alice/notes") \
        .add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    for name, func, help_text in (("del", cmd_hook_del, "delete a webhook"),
                                  ("enable", cmd_hook_enable, "enable a webhook disabled for failing")):
        add_command(group, name, func, help_text, f"hostd hook {name} 3") \
            .add_argument("hook_id", type=positive_int, metavar="ID", help="the id hook list shows")
    p = add_command(group, "deliveries", cmd_hook_deliveries, "list a webhook's deliveries and their attempts",
                    "hostd hook deliveries 3")
    p.add_argument("hook_id", type=positive_int, metavar="ID", help="the id hook list shows")
    p.add_argument("--limit", type=positive_int, default=20, help="how many deliveries, newest first (default 20)")
    add_command(group, "redeliver", cmd_hook_redeliver, "send a delivery again (same body, same id)",
                "hostd hook redeliver 1b4e28ba-2fa1-11d2-883f-0016d3cca427") \
        .add_argument("delivery", metavar="DELIVERY", help="the delivery id hook deliveries shows")
    queue = add_group(top, "queue", "the durable queue of background jobs", "hostd queue status")
    add_command(queue, "status", cmd_queue_status, "show each queue's depth, oldest waiting job and workers",
                "hostd queue status")
