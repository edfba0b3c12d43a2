"""A password change counts at once in every worker, though each worker caches the user's record.

Each git-pool worker keeps the records it read (hostd/store/records.py) and
forgets them when PostgreSQL notifies a change (LISTEN/NOTIFY). Here both
workers of the pool are warmed with many requests using the old password,
the password is changed with ``hostd user passwd``, and right away every
request with the old password is refused and every one with the new
password accepted, whichever worker serves it. (Without the feed, a worker
would go on accepting the old password from its cached record for the
cache's lifetime.)
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.chaos.tools import LogMark
from tests.e2e.stackfixture import Stack

REQUESTS = 48


def refs(repo: str) -> str:
    return f"/{repo}.git/info/refs?service=git-upload-pack"


def statuses(stack: Stack, repo: str, auth: tuple[str, str], count: int = REQUESTS) -> list[int]:
    """``count`` requests, eight at a time (each on a connection of its own), so both workers get some."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: stack.request(refs(repo), auth)[0], range(count)))


def serving_workers(lines: list[str], user: str) -> set[str]:
    """The worker PIDs whose singlemalt allowed a request of ``user`` (``[pid]`` in hostd's log format)."""
    return {m[1] for line in lines if f"allowed user='{user}'" in line
            for m in [re.search(r"\[(\d+)\]", line)] if m}


def test_a_password_change_counts_at_once_in_every_worker(stack: Stack, tmp_path: Path) -> None:
    stack.forget_failed_logins()
    user = f"across{uuid.uuid4().hex[:8]}"
    old, new = "old password P1", "new password P2"
    stack.add_user(user, old)
    repo = f"{user}/private"
    stack.seed_git(repo, tmp_path / "seed", {"README": b"workers\n"})
    log = LogMark(stack.settings.log_dir / "git.log")

    assert statuses(stack, repo, (user, old)) == [200] * REQUESTS
    warmed = serving_workers(log.lines(), user)
    assert len(warmed) == len(stack.pool_workers("git")) == 2, f"both workers must be warm, served by {warmed}"

    stack.hostd("user", "passwd", user, stdin=new + "\n")
    # Every one is a failed login, and ten lock the account (429): the
    # counters are reset between rounds so that each answer is the verdict.
    for _ in range(REQUESTS // 8):
        assert statuses(stack, repo, (user, old), 8) == [401] * 8
        stack.forget_failed_logins()
    assert statuses(stack, repo, (user, new)) == [200] * REQUESTS
    stack.forget_failed_logins()
