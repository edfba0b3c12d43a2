"""Read-only summaries of a repository for the web tier: refs and recent commits.

Both kinds are read through their libraries in-process (dulwich, Mercurial),
never through the VCS pools, so the web tier stays off the clone/push path
and the pools stay off the page path.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from dulwich.refs import Ref
from dulwich.repo import Repo as GitRepo
from mercurial import hg
from mercurial import ui as uimod

RECENT = 20


@dataclass(frozen=True, slots=True)
class Commit:
    """One line of history, already decoded for display."""

    node: str
    author: str
    when: int
    summary: str


@dataclass(frozen=True, slots=True)
class Summary:
    """What a repository page shows."""

    refs: dict[str, list[str]]
    commits: list[Commit]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def git_summary(path: Path) -> Summary:
    """Branches, tags and the newest commits reachable from HEAD."""
    repo = GitRepo(str(path))
    try:
        refs = repo.get_refs()
        branches = sorted(_text(r[len(b"refs/heads/"):]) for r in refs if r.startswith(b"refs/heads/"))
        tags = sorted(
            _text(r[len(b"refs/tags/"):]) for r in refs if r.startswith(b"refs/tags/") and not r.endswith(b"^{}")
        )
        commits: list[Commit] = []
        head = refs.get(Ref(b"HEAD"))
        if head is not None:
            for entry in repo.get_walker(include=[head], max_entries=RECENT):
                c = entry.commit
                commits.append(Commit(_text(c.id), _text(c.author), c.commit_time,
                                      _text(c.message).strip().splitlines()[0] if c.message.strip() else ""))
        return Summary({"branches": branches, "tags": tags}, commits)
    finally:
        repo.close()


def hg_summary(path: Path) -> Summary:
    """Bookmarks, named branches, tags and the newest changesets."""
    ui = uimod.ui()
    ui.setconfig(b"ui", b"report_untrusted", b"false", b"hostd")
    repo = hg.repository(ui, os.fsencode(path)).filtered(b"served")
    try:
        bookmarks = sorted(_text(b) for b in repo._bookmarks)
        branches = sorted({_text(repo[node].branch()) for node in repo.heads()})
        tags = sorted(_text(t) for t in repo.tags() if t != b"tip")
        commits = []
        tip = len(repo.unfiltered()) - 1
        # The "served" changelog skips secret and hidden changesets.
        for rev in itertools.islice(repo.changelog.revs(start=tip, stop=0), RECENT):
            ctx = repo[rev]
            summary = _text(ctx.description()).strip().splitlines()
            commits.append(Commit(_text(ctx.hex()), _text(ctx.user()), int(ctx.date()[0]),
                                  summary[0] if summary else ""))
        return Summary({"bookmarks": bookmarks, "branches": branches, "tags": tags}, commits)
    finally:
        repo.close()
