"""``hostd``: the admin command line.

Every command takes ``--data DIR`` (default: ``$HOSTD_DATA`` or ``var/``).
Errors print one line on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from hostd.cli import flags as cli_flags
from hostd.cli import pool as cli_pool
from hostd.cli import reap as cli_reap
from hostd.names import RepoName, parse_repo_name
from hostd.ops.bootstrap import initialize
from hostd.ops.maintain import Report, maintain_git, maintain_hg
from hostd.settings import Settings, SettingsError
from hostd.store.accounts import AccountError, Accounts, Level
from hostd.store.database import Database
from hostd.store.pushlog import PushLog
from hostd.store.storage import Storage, StorageError
from singlemalt import Scope


class CommandError(Exception):
    """A command that cannot be carried out; the message is printed as is."""


def _repo_arg(text: str) -> RepoName:
    ref = parse_repo_name(text)
    if ref is None:
        raise argparse.ArgumentTypeError(
            f"invalid repository name {text!r}: expected OWNER/NAME, letters, digits, '.', '_', '-'"
        )
    return ref


def _read_password(prompt_twice: bool = True) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if prompt_twice and getpass.getpass("Password (again): ") != first:
        raise CommandError("passwords do not match")
    return first


def _context(args: argparse.Namespace) -> tuple[Settings, Accounts, Storage]:
    settings = Settings.from_env()
    if args.data:
        settings = replace(settings, data_dir=Path(args.data).resolve())
    initialize(settings, demo=False)
    return settings, Accounts(Database(settings.database)), Storage(settings.repo_root)


def cmd_init(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    if args.data:
        settings = replace(settings, data_dir=Path(args.data).resolve())
    demo = initialize(settings, demo=not args.no_demo)
    print(f"data directory ready: {settings.data_dir}")
    if demo is not None:
        print(f"demo user: {demo.username}  password: {demo.password}  (stored in "
              f"{settings.data_dir / 'demo-password'})")


def cmd_user_add(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    name = accounts.add_user(args.name, _read_password())
    print(f"user {name} created")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    if accounts.user(args.name) is None:
        raise CommandError(f"no such user: {args.name}")
    accounts.set_password(args.name, _read_password())
    print(f"password of {args.name.lower()} changed")


def cmd_user_del(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    accounts.delete_user(args.name)
    print(f"user {args.name.lower()} deleted")


def cmd_repo_create(args: argparse.Namespace) -> None:
    _, accounts, storage = _context(args)
    repo = accounts.add_repo(args.repo, args.vcs, args.public)
    try:
        storage.create(args.repo, args.vcs)
    except BaseException:
        accounts.delete_repo(args.repo)
        raise
    visibility = "public" if repo.public else "private"
    print(f"{visibility} {repo.vcs} repository {repo.ref} created")


def cmd_repo_delete(args: argparse.Namespace) -> None:
    _, accounts, storage = _context(args)
    repo = accounts.delete_repo(args.repo)
    storage.delete(repo.ref, repo.vcs)
    print(f"repository {repo.ref} deleted")


def cmd_repo_list(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    for repo in accounts.repos():
        print(f"{repo.ref}\t{repo.vcs}\t{'public' if repo.public else 'private'}")


def cmd_grant(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    accounts.grant(args.user, args.repo, Level[args.level.upper()])
    print(f"{args.user.lower()} has {args.level} access to {args.repo}")


def cmd_revoke(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    accounts.revoke(args.user, args.repo)
    print(f"{args.user.lower()} no longer has a grant on {args.repo}")


def cmd_token_create(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    if args.expires_days is not None and args.expires_days <= 0:
        raise CommandError("--expires-days must be positive")
    issued = accounts.create_token(args.user, Scope(args.scope), args.expires_days)
    print(f"token {issued.token_id} ({args.scope}) for {args.user.lower()}; it is shown only now:")
    print(issued.token)


def cmd_token_list(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    now = time.time()
    for info in accounts.list_tokens(args.user):
        if info.revoked:
            state = "revoked"
        elif info.expires_at is not None and info.expires_at <= now:
            state = "expired"
        elif info.expires_at is not None:
            state = "expires " + time.strftime("%Y-%m-%d", time.gmtime(info.expires_at))
        else:
            state = "no expiry"
        created = time.strftime("%Y-%m-%d", time.gmtime(info.created))
        print(f"{info.token_id}\t{info.scope}\tcreated {created}\t{state}")


def cmd_token_revoke(args: argparse.Namespace) -> None:
    _, accounts, _ = _context(args)
    accounts.revoke_token(args.token_id)
    print(f"token {args.token_id} revoked")


def cmd_log(args: argparse.Namespace) -> None:
    settings, accounts, _ = _context(args)
    if accounts.repo(args.repo) is None:
        raise CommandError(f"no such repository: {args.repo}")
    for entry in PushLog(Database(settings.database)).entries(args.repo, args.limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.at))
        print(f"{when}Z\t{entry.username}\t{entry.ref}\t{entry.old[:12]} -> {entry.new[:12]}")


def cmd_maintain(args: argparse.Namespace) -> None:
    _, accounts, storage = _context(args)
    if args.repo is not None:
        repo = accounts.repo(args.repo)
        if repo is None:
            raise CommandError(f"no such repository: {args.repo}")
        repos = [repo]
    else:
        repos = accounts.repos()
    failed = False
    for repo in repos:
        report = Report(str(repo.ref))
        path = storage.path(repo.ref, repo.vcs)
        (maintain_git if repo.vcs == "git" else maintain_hg)(path, report)
        for action in report.actions:
            print(f"{repo.ref}: {action}")
            failed = failed or "FAILED" in action
    if failed:
        raise CommandError("maintenance failed for some repositories (see above)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $HOSTD_DATA or var/)")
    parser = argparse.ArgumentParser(prog="hostd", parents=[common], description=__doc__)
    parser.set_defaults(data=None)
    top = parser.add_subparsers(dest="command", required=True)

    def add(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            func: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help)
        p.set_defaults(func=func)
        return p

    p = add(top, "init", cmd_init, "create the data directory (and the demo account)")
    p.add_argument("--no-demo", action="store_true")

    user = top.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    for name, func, help in (("add", cmd_user_add, "create a user"),
                             ("passwd", cmd_user_passwd, "change a password"),
                             ("del", cmd_user_del, "delete a user")):
        add(user, name, func, help).add_argument("name")

    repo = top.add_parser("repo", help="manage repositories").add_subparsers(dest="action", required=True)
    p = add(repo, "create", cmd_repo_create, "create a repository")
    p.add_argument("repo", type=_repo_arg)
    p.add_argument("--vcs", choices=("git", "hg"), required=True)
    p.add_argument("--public", action="store_true")
    add(repo, "delete", cmd_repo_delete, "delete a repository").add_argument("repo", type=_repo_arg)
    add(repo, "list", cmd_repo_list, "list repositories")

    p = add(top, "grant", cmd_grant, "give a user access to a repository")
    p.add_argument("user")
    p.add_argument("repo", type=_repo_arg)
    p.add_argument("level", choices=("read", "write", "admin"))
    p = add(top, "revoke", cmd_revoke, "remove a user's grant on a repository")
    p.add_argument("user")
    p.add_argument("repo", type=_repo_arg)

    token = top.add_parser("token", help="manage access tokens").add_subparsers(dest="action", required=True)
    p = add(token, "create", cmd_token_create, "create an access token (shown once)")
    p.add_argument("user")
    p.add_argument("--scope", choices=("read", "write"), default="write")
    p.add_argument("--expires-days", type=int, default=None)
    add(token, "list", cmd_token_list, "list a user's tokens").add_argument("user")
    add(token, "revoke", cmd_token_revoke, "revoke a token").add_argument("token_id")
    p = add(top, "maintain", cmd_maintain, "pack repositories and remove what killed workers left behind")
    p.add_argument("repo", type=_repo_arg, nargs="?")
    p = add(top, "log", cmd_log, "show the push log of a repository, newest first")
    p.add_argument("repo", type=_repo_arg)
    p.add_argument("--limit", type=int, default=100)
    cli_flags.register(top, add)
    cli_pool.register(top, add)
    cli_reap.register(top, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (AccountError, CommandError, StorageError, SettingsError) as error:
        print(f"hostd: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
