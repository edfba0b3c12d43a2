"""``hostd key add|list|del``: SSH public keys, a user's own or a repository's deploy keys.

The key is read from standard input, one line as in a ``.pub`` file; its
comment (its first 100 characters) is the title unless ``--title`` gives one. A user's key logs in as
the user; a deploy key reaches its one repository, read-only unless added
with ``--write``::

    hostd key add alice --title laptop < ~/.ssh/id_ed25519.pub
    hostd key add --repo alice/notes --write --title ci < deploy.pub
    hostd key list alice
    hostd key list --repo alice/notes
    hostd key del 7
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC

from hostd.cli.args import SubParsers, add_command, add_group, positive_int, repo_name
from hostd.cli.errors import CommandError, UsageError
from hostd.cli.installation import open_installation
from hostd.store.keys import MAX_LINE, MAX_TITLE, KeyRecord, Keys, parse_public_key


def _keys(args: argparse.Namespace) -> Keys:
    return Keys(open_installation(args).database)


def _read_key() -> str:
    """One line from a terminal; from a pipe, all of it (up to a bound), so that two keys are refused."""
    if sys.stdin.isatty():
        return sys.stdin.readline()
    return sys.stdin.read(MAX_LINE + 2)


def _access(record: KeyRecord) -> str:
    return "read-write" if record.can_write else "read-only"


def _line(record: KeyRecord) -> str:
    fields = [str(record.key_id), record.kind, str(record.bits), record.fingerprint, record.title or "-"]
    if record.repo is not None:
        fields.append(_access(record))
    fields.append("created " + record.created.astimezone(UTC).strftime("%Y-%m-%d"))
    return "\t".join(fields)


def cmd_key_add(args: argparse.Namespace) -> None:
    """Add the public key on stdin to a user, or to a repository as a deploy key."""
    if args.write and args.repo is None:
        raise UsageError("--write is for deploy keys only (--repo OWNER/NAME): a user's key has the user's access")
    keys = _keys(args)
    key = parse_public_key(_read_key())
    # The comment is only a default: cut to fit rather than refused.
    title = key.comment[:MAX_TITLE] if args.title is None else args.title
    if args.repo is None:
        record = keys.add(args.user, key, title)
        print(f"added key {record.key_id} {record.fingerprint} for {record.username}")
    else:
        record = keys.add_deploy(args.repo, key, title, args.write)
        print(f"added deploy key {record.key_id} {record.fingerprint} ({_access(record)}) for {args.repo}")


def cmd_key_list(args: argparse.Namespace) -> None:
    """One line per key: id, type, bits, fingerprint, title, (a deploy key's access,) creation date."""
    keys = _keys(args)
    for record in keys.for_user(args.user) if args.repo is None else keys.for_repo(args.repo):
        print(_line(record))


def cmd_key_del(args: argparse.Namespace) -> None:
    """Delete a key by its id; it stops working at the next login."""
    record = _keys(args).delete(args.key_id)
    if record is None:
        raise CommandError(f"no such key: {args.key_id}")
    print(f"deleted key {record.key_id} {record.fingerprint} ({record.kind}) of {record.holder}")


def register(top: SubParsers) -> None:
    """Add ``key`` to the ``hostd`` parser."""
    group = add_group(top, "key", "manage SSH public keys (a user's, or a repository's deploy keys)",
                      "hostd key list alice")
    p = add_command(group, "add", cmd_key_add, "add the SSH public key on stdin to a user or a repository",
                    "hostd key add alice --title laptop", "hostd key add --repo alice/notes --write --title ci")
    _holder(p, "who gets the key; it logs in as them", "add a deploy key of this repository instead")
    p.add_argument("--write", action="store_true", help="a deploy key that may push (default: read-only)")
    p.add_argument("--title", metavar="T", help="what the key is (default: the key's comment)")
    p = add_command(group, "list", cmd_key_list, "list a user's keys or a repository's deploy keys",
                    "hostd key list alice", "hostd key list --repo alice/notes")
    _holder(p, "whose keys", "list this repository's deploy keys instead")
    add_command(group, "del", cmd_key_del, "delete a key", "hostd key del 7") \
        .add_argument("key_id", type=positive_int, metavar="ID", help="the id that key list and key add show")


def _holder(parser: argparse.ArgumentParser, user_help: str, repo_help: str) -> None:
    """USER or ``--repo OWNER/NAME``: exactly one."""
    holder = parser.add_mutually_exclusive_group(required=True)
    holder.add_argument("user", nargs="?", metavar="USER", help=user_help)
    holder.add_argument("--repo", type=repo_name, metavar="OWNER/NAME", help=repo_help)
