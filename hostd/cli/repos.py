"""``hostd repo``, ``hostd log`` and ``hostd maintain``: the repositories themselves.

A repository is a row in the account database and a directory under
``<data>/repos``; ``repo create`` and ``repo delete`` change both, the row
first, so a repository a pool can find always has its row.

    hostd repo create alice/notes --vcs hg --public
    hostd repo move alice/notes s2 --to /srv/shards/s2/repos
    hostd log alice/notes --limit 20
    hostd maintain
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hostd.cli.args import SubParsers, add_command, add_group, positive_int, repo_name
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.cli.shards import shard_name
from hostd.ops import move
from hostd.ops.maintain import Report, maintain_git, maintain_hg
from hostd.store.accounts import Repo
from hostd.store.pushlog import PushLog
from hostd.store.shards import Shards


def cmd_repo_create(args: argparse.Namespace) -> None:
    """Register the repository, then create it on disk (or take the row back)."""
    installation = open_installation(args)
    accounts = installation.accounts
    shard = Shards(installation.database).get(args.shard).name if args.shard else accounts.placement()
    here = installation.settings.shard
    if shard != here:
        # Only the shard's own hosts hold its repository directory.
        raise CommandError(f"{args.repo} goes on shard {shard}, and this host holds shard {here}"
                           f" (HOSTD_SHARD): run the command on a host of {shard}, or add --shard {here}")
    repo = accounts.add_repo(args.repo, args.vcs, args.public, shard=shard)
    try:
        installation.storage.create(args.repo, args.vcs)
    except BaseException:
        accounts.delete_repo(args.repo)
        raise
    visibility = "public" if repo.public else "private"
    print(f"{visibility} {repo.vcs} repository {repo.ref} created on shard {repo.shard}")


def cmd_repo_delete(args: argparse.Namespace) -> None:
    """Remove the row (the pools stop serving it), then the directory."""
    installation = open_installation(args)
    repo = installation.accounts.delete_repo(args.repo)
    installation.storage.delete(repo.ref, repo.vcs)
    print(f"repository {repo.ref} deleted")


def cmd_repo_move(args: argparse.Namespace) -> None:
    """Move a repository to another shard while it is in use; a few seconds read-only."""
    installation = open_installation(args)
    settings, db = installation.settings, installation.database
    if args.abandon:
        if not move.abandon(db, args.repo, args.shard):
            raise CommandError(f"{args.repo} is not being moved to {args.shard}")
        print(f"{args.repo}: the interrupted move to {args.shard} is abandoned; pushes are accepted again")
        return
    repo = installation.accounts.repo(args.repo)
    if repo is None:
        raise CommandError(f"no such repository: {args.repo}")
    roots = {"--from": (args.source, repo.shard), "--to": (args.target, args.shard)}
    for option, (given, shard) in roots.items():
        if given is None and shard != settings.shard:
            raise CommandError(f"{option} is needed: shard {shard} is not this host's ({settings.shard}); give the"
                               f" path of its repository directory")
    try:
        moved = move.move(db, args.repo, args.shard, source_root=args.source or settings.repo_root,
                          target_root=args.target or settings.repo_root)
    except (move.MoveError, TimeoutError) as error:
        raise CommandError(str(error)) from None
    print(moved.summary())


def cmd_repo_list(args: argparse.Namespace) -> None:
    """One line per repository: name, kind, visibility, shard."""
    for repo in open_installation(args).accounts.repos():
        print(f"{repo.ref}\t{repo.vcs}\t{'public' if repo.public else 'private'}\t{repo.shard}")


def cmd_log(args: argparse.Namespace) -> None:
    """The push log of one repository, newest first."""
    installation = open_installation(args)
    if installation.accounts.repo(args.repo) is None:
        raise CommandError(f"no such repository: {args.repo}")
    for entry in PushLog(installation.database).entries(args.repo, args.limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.at))
        print(f"{when}Z\t{entry.username}\t{entry.ref}\t{entry.old[:12]} -> {entry.new[:12]}")


def cmd_maintain(args: argparse.Namespace) -> None:
    """Pack one repository or all; one line per action; fails if any action failed."""
    installation = open_installation(args)
    repos: list[Repo]
    if args.repo is not None:
        repo = installation.accounts.repo(args.repo)
        if repo is None:
            raise CommandError(f"no such repository: {args.repo}")
        if repo.shard != installation.settings.shard:
            raise CommandError(f"{repo.ref} is on shard {repo.shard}: maintain it on a host of that shard")
        repos = [repo]
    else:
        # This host's shard only: the others' repositories are not here.
        repos = [r for r in installation.accounts.repos() if r.shard == installation.settings.shard]
    failed = False
    for repo in repos:
        report = Report(str(repo.ref))
        path = installation.storage.path(repo.ref, repo.vcs)
        (maintain_git if repo.vcs == "git" else maintain_hg)(path, report)
        for action in report.actions:
            print(f"{repo.ref}: {action}")
            failed = failed or "FAILED" in action
    if args.repo is None:
        for old in move.purge_moved(installation.settings.repo_root):
            print(f"removed {old}: the old copy of a repository moved to another shard over a day ago")
    if failed:
        raise CommandError("maintenance failed for some repositories (see above)")


def register(top: SubParsers) -> None:
    """Add ``repo``, ``log`` and ``maintain`` to the ``hostd`` parser."""
    repo = add_group(top, "repo", "manage repositories", "hostd repo create alice/notes --vcs hg --public")
    p = add_command(repo, "create", cmd_repo_create, "create a repository",
                    "hostd repo create alice/notes --vcs hg --public", "hostd repo create alice/site --vcs git")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME",
                   help="the repository; OWNER must be a user, and gets admin access to it")
    p.add_argument("--vcs", choices=("git", "hg"), required=True, help="git or Mercurial")
    p.add_argument("--public", action="store_true", help="anyone may clone it (default: private)")
    p.add_argument("--shard", type=shard_name, help="the storage shard to put it on (default: placed by weight)")
    add_command(repo, "delete", cmd_repo_delete, "delete a repository and everything in it",
                "hostd repo delete alice/notes") \
        .add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    add_command(repo, "list", cmd_repo_list, "list repositories", "hostd repo list --data /srv/hostd")
    p = add_command(repo, "move", cmd_repo_move, "move a repository to another storage shard while it is in use",
                    "hostd repo move alice/notes s2 --to /srv/shards/s2/repos",
                    "hostd repo move alice/notes s2 --abandon")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    p.add_argument("shard", type=shard_name, help="the shard to move it to")
    p.add_argument("--from", dest="source", type=Path, metavar="DIR",
                   help="its shard's repository directory (default: this host's, for this host's shard)")
    p.add_argument("--to", dest="target", type=Path, metavar="DIR",
                   help="the new shard's repository directory (default: this host's, for this host's shard)")
    p.add_argument("--abandon", action="store_true",
                   help="end the read-only window of an interrupted move, leaving the repository where it is")

    p = add_command(top, "maintain", cmd_maintain,
                    "pack repositories and remove what killed workers left behind",
                    "hostd maintain", "hostd maintain alice/notes")
    p.add_argument("repo", type=repo_name, nargs="?", metavar="OWNER/NAME",
                   help="only this repository (default: all of them)")
    p = add_command(top, "log", cmd_log, "show the push log of a repository, newest first",
                    "hostd log alice/notes --limit 20")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    p.add_argument("--limit", type=positive_int, default=100, metavar="N",
                   help="at most this many entries (default 100)")
