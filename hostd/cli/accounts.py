"""``hostd user``, ``hostd grant``/``revoke`` and ``hostd token``: who may do what.

Passwords are read from standard input when it is not a terminal (one line,
for scripts), else prompted for twice. A token's secret is printed once, at
creation; the database keeps only its hash.

    printf '%s\\n' "$PASSWORD" | hostd user add alice
    hostd grant bob alice/notes write
    hostd token create alice --scope read --expires-days 30
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from hostd.cli.args import SubParsers, add_command, add_group, positive_int, repo_name
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.store.accounts import Level, TokenInfo
from singlemalt import Scope


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise CommandError("passwords do not match")
    return first


def cmd_user_add(args: argparse.Namespace) -> None:
    """Create a user with the password read from stdin or the terminal."""
    accounts = open_installation(args).accounts
    name = accounts.add_user(args.name, _read_password())
    print(f"user {name} created")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    """Replace a user's password; their cached credentials stop working."""
    accounts = open_installation(args).accounts
    if accounts.user(args.name) is None:
        raise CommandError(f"no such user: {args.name}")
    accounts.set_password(args.name, _read_password())
    print(f"password of {args.name.lower()} changed")


def cmd_user_del(args: argparse.Namespace) -> None:
    """Delete a user with their grants and tokens."""
    open_installation(args).accounts.delete_user(args.name)
    print(f"user {args.name.lower()} deleted")


def cmd_grant(args: argparse.Namespace) -> None:
    """Give a user read, write or admin access to one repository."""
    open_installation(args).accounts.grant(args.user, args.repo, Level[args.level.upper()])
    print(f"{args.user.lower()} has {args.level} access to {args.repo}")


def cmd_revoke(args: argparse.Namespace) -> None:
    """Remove a user's grant on one repository."""
    open_installation(args).accounts.revoke(args.user, args.repo)
    print(f"{args.user.lower()} no longer has a grant on {args.repo}")


def cmd_token_create(args: argparse.Namespace) -> None:
    """Issue a token and print its secret, the only time it is shown."""
    issued = open_installation(args).accounts.create_token(args.user, Scope(args.scope), args.expires_days)
    print(f"token {issued.token_id} ({args.scope}) for {args.user.lower()}; it is shown only now:")
    print(issued.token)


def _token_state(info: TokenInfo, now: float) -> str:
    if info.revoked:
        return "revoked"
    if info.expires_at is not None and info.expires_at <= now:
        return "expired"
    if info.expires_at is not None:
        return "expires " + time.strftime("%Y-%m-%d", time.gmtime(info.expires_at))
    return "no expiry"


def cmd_token_list(args: argparse.Namespace) -> None:
    """One line per token of a user: id, scope, creation date, state; never the secret."""
    now = time.time()
    for info in open_installation(args).accounts.list_tokens(args.user):
        created = time.strftime("%Y-%m-%d", time.gmtime(info.created))
        print(f"{info.token_id}\t{info.scope}\tcreated {created}\t{_token_state(info, now)}")


def cmd_token_revoke(args: argparse.Namespace) -> None:
    """Revoke a token by its id; it stops working at once."""
    open_installation(args).accounts.revoke_token(args.token_id)
    print(f"token {args.token_id} revoked")


def register(top: SubParsers) -> None:
    """Add ``user``, ``grant``, ``revoke`` and ``token`` to the ``hostd`` parser."""
    user = add_group(top, "user", "manage users", "hostd user add alice")
    for name, func, text in (("add", cmd_user_add, "create a user (password from stdin, or prompted twice)"),
                             ("passwd", cmd_user_passwd, "change a user's password (stdin, or prompted twice)"),
                             ("del", cmd_user_del, "delete a user with their grants and tokens")):
        add_command(user, name, func, text, f"hostd user {name} alice") \
            .add_argument("name", metavar="NAME", help="the user name (case-insensitive)")

    p = add_command(top, "grant", cmd_grant, "give a user access to a repository",
                    "hostd grant bob alice/notes write")
    p.add_argument("user", metavar="USER", help="who gets access")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")
    p.add_argument("level", choices=("read", "write", "admin"),
                   help="read: clone and fetch; write: also push; admin: also manage the repository")
    p = add_command(top, "revoke", cmd_revoke, "remove a user's grant on a repository",
                    "hostd revoke bob alice/notes")
    p.add_argument("user", metavar="USER", help="whose grant goes")
    p.add_argument("repo", type=repo_name, metavar="OWNER/NAME", help="the repository")

    token = add_group(top, "token", "manage access tokens (app passwords)", "hostd token list alice")
    p = add_command(token, "create", cmd_token_create, "create an access token (its secret is shown once)",
                    "hostd token create alice --scope read --expires-days 30")
    p.add_argument("user", metavar="USER", help="the token's owner; it acts as them")
    p.add_argument("--scope", choices=("read", "write"), default="write",
                   help="read: clone and fetch only; write: also push (default write)")
    p.add_argument("--expires-days", type=positive_int, default=None, metavar="N",
                   help="days until it stops working (default: never)")
    add_command(token, "list", cmd_token_list, "list a user's tokens, without their secrets",
                "hostd token list alice").add_argument("user", metavar="USER", help="whose tokens")
    add_command(token, "revoke", cmd_token_revoke, "revoke a token", "hostd token revoke 3f9c2a1b") \
        .add_argument("token_id", metavar="ID", help="the id that token list and token create show")
