"""``hostd db upgrade|current|backup|restore``: the installation's PostgreSQL database.

    hostd db current                     # the schema revision, and whether it is the newest
    hostd db upgrade                     # apply the migrations it lacks (make up does this too)
    hostd db backup /srv/backup/hostd.dump
    hostd db restore /srv/backup/hostd.dump --yes

With the stack's own cluster (no ``HOSTD_DATABASE_URL``), each command
works whether the stack runs or not: a stopped cluster is started for the
command and stopped after it (:func:`hostd.ops.postgres.temporary_server`).

Backups are ``pg_dump``'s custom format (``-Fc``): compressed, and
restorable with ``pg_restore`` by hand as well. A backup is written to a
``.partial`` file, checked to be readable by ``pg_restore``, and only then
renamed to FILE (0600: it holds password and token hashes), so a FILE that
exists is a whole backup. ``pg_dump`` and ``pg_restore`` are the newest
installed (:func:`hostd.ops.postgres.server`): they must be at least the
server's version.

``restore`` makes the database exactly the backup, in one transaction (all
of it or nothing): ``pg_restore`` writes the backup out as SQL, and ``psql``
runs it after dropping every table, function and type hostd's role owns in
the ``public`` schema (so nothing of a newer revision is left behind for a
later migration to trip on), then notifies every pool. It asks for
``--yes``, and refuses while this installation's stack is running: its
workers would keep serving what they cached from the database being
replaced. Pools on other hosts (an external database) are told every table
changed once the restore commits (the ``hostd_changes`` notifications), but
stop them too: a push during the restore fails. A backup of an older schema
revision is restored as it is; ``hostd db upgrade`` then brings it to the
newest.

No command prints the database URL: it may hold a password. The password
reaches ``pg_dump``/``psql`` in their environment, never on their
command line, where every local user could read it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hostd.cli.args import SubParsers, add_command, add_group
from hostd.cli.errors import CommandError
from hostd.cli.installation import open_installation
from hostd.ops import postgres, stack
from hostd.settings import Settings
from hostd.store import schema

#: The tables whose caches the pools drop on a notification (migration 0002).
NOTIFIED_TABLES = ("users", "tokens", "repos", "grants", "flags")

#: Before a restore, every table, view, sequence, function and type of ours
#: in the ``public`` schema goes: the database becomes exactly the backup,
#: with nothing of a newer revision left over for a migration to trip on.
DROP_EVERYTHING = """
SET LOCAL client_min_messages = warning;  -- no "drop cascades to" notices
DO $$
DECLARE item record;
BEGIN
    FOR item IN
        SELECT sql FROM (
            SELECT CASE relkind WHEN 'S' THEN 2 ELSE 1 END,  -- tables first: they take their identity sequences along
                   format('DROP %s IF EXISTS public.%I CASCADE', CASE relkind WHEN 'v' THEN 'VIEW'
                          WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, relname)
            FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S')
                AND pg_has_role(relowner, 'USAGE')
            UNION ALL
            SELECT 3, format('DROP ROUTINE IF EXISTS %s CASCADE', oid::regprocedure)
            FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind IN ('f', 'p')
                AND pg_has_role(proowner, 'USAGE')
            UNION ALL
            SELECT 4, format('DROP %s IF EXISTS public.%I CASCADE', CASE typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                             typname)
            FROM pg_type WHERE typnamespace = 'public'::regnamespace AND pg_has_role(typowner, 'USAGE')
                AND (typtype IN ('e', 'd', 'r', 'm')  -- and composite types of their own (the queue's), not rows
                     OR typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = typrelid) = 'c')
        ) AS drops (rank, sql) ORDER BY rank
    LOOP
        EXECUTE item.sql;
    END LOOP;
END $$;
"""
#: After a restore, every pool forgets what it cached (pg_restore loads the
#: rows before it makes the triggers that would have said so).
NOTIFY_EVERYTHING = ("SELECT pg_notify('hostd_changes', t) FROM unnest(ARRAY['"
                     + "', '".join(NOTIFIED_TABLES) + "']) AS t")


def _database(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The installation's database reachable for the block (its own server, started for it if it is down)."""
    return postgres.temporary_server(settings) if settings.managed_database else contextlib.nullcontext()


def _revision(revision: str | None) -> str:
    return "none (no schema yet)" if revision is None else revision


def cmd_db_current(args: argparse.Namespace) -> None:
    """Print the database's revision and whether it is the newest."""
    settings = open_installation(args).settings
    with _database(settings):
        revision = schema.current(settings.database)
    head = schema.head()
    if revision == head:
        print(f"{revision} (head)")
    else:
        print(f"{_revision(revision)}; the newest is {head}: run hostd db upgrade")


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    """Apply every migration the database lacks."""
    settings = open_installation(args).settings
    with _database(settings):
        before = schema.current(settings.database)
        schema.upgrade(settings.database)
        after = schema.current(settings.database)
    if before == after:
        print(f"database already at {after} (head)")
    else:
        print(f"database upgraded from {_revision(before)} to {after}")


def cmd_db_backup(args: argparse.Namespace) -> None:
    """Dump the database to FILE in pg_dump's custom format."""
    settings = open_installation(args).settings
    target = Path(args.file)
    if target.exists():
        raise CommandError(f"{target} exists; give a new file name (a backup never overwrites another)")
    partial = target.with_name(target.name + ".partial")
    # 0600 before a byte is written: the dump holds password and token hashes.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with _database(settings):
            _tool("pg_dump", settings, "--format=custom", f"--file={partial}")
        _check_dump(partial)
        os.rename(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    print(f"backup written to {target} ({target.stat().st_size} bytes); restore it with: hostd db restore {target}")


def cmd_db_restore(args: argparse.Namespace) -> None:
    """Replace the database's tables with a backup's, in one transaction."""
    settings = open_installation(args).settings
    source = Path(args.file)
    if not args.yes:
        raise CommandError(f"restoring replaces every account, token, repository record and push-log entry "
                           f"with those in {source}; run again with --yes")
    if stack.supervisord_pid(settings) is not None:
        raise CommandError("the stack is running: stop it first (make down), so that no worker serves "
                           "what it cached from the database being replaced")
    _check_dump(source)  # before anything is dropped
    # pg_restore turns the whole backup into SQL first (a file, 0600): psql
    # then runs it between dropping what is there and telling the pools, in
    # one transaction. Piped instead, a pg_restore dying half-way would hand
    # psql an end of file, and psql would commit half a database.
    with tempfile.NamedTemporaryFile(prefix="hostd-restore-", suffix=".sql") as script:
        _run("pg_restore", [postgres.server().tool("pg_restore"), "--no-owner", "--no-privileges",
                            f"--file={script.name}", str(source)])
        with _database(settings):
            _tool("psql", settings, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction",
                  f"--command={DROP_EVERYTHING}", f"--file={script.name}", f"--command={NOTIFY_EVERYTHING}")
            revision = schema.current(settings.database)
    head = schema.head()
    note = " (head)" if revision == head else f"; the newest is {head}: run hostd db upgrade"
    print(f"database restored from {source}; it is at revision {_revision(revision)}{note}")


def _check_dump(path: Path) -> None:
    """Refuse a file ``pg_restore`` cannot read (its table of contents)."""
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    result = subprocess.run([postgres.server().tool("pg_restore"), "--list", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandError(f"{path} is not a backup pg_restore can read: {_first_line(result.stderr)}")


def _tool(name: str, settings: Settings, *arguments: str) -> None:
    """Run ``pg_dump`` or ``psql`` on the installation's database (``--dbname`` holds all but the password)."""
    params = conninfo_to_dict(settings.database)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)  # only this user (and root) can read a process's environment
    _run(name, [postgres.server().tool(name), "--dbname=" + make_conninfo("", **params), *arguments], env)


def _run(name: str, command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd="/")
    if result.returncode != 0:
        raise CommandError(f"{name} failed (exit {result.returncode}): {_first_line(result.stderr)}")


def _first_line(text: str) -> str:
    """The line of a tool's output that says what went wrong: its first error, else its first line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line or "error:" in line]
    return (errors or lines or ["no message"])[0]


def register(top: SubParsers) -> None:
    """Add the ``db`` command group to the ``hostd`` parser."""
    db = add_group(top, "db", "migrate, back up and restore the database", "hostd db current")
    add_command(db, "current", cmd_db_current, "show the schema revision and whether it is the newest",
                "hostd db current")
    add_command(db, "upgrade", cmd_db_upgrade, "apply the schema migrations the database lacks",
                "hostd db upgrade --data /srv/hostd")
    p = add_command(db, "backup", cmd_db_backup, "write the database to a file (pg_dump's custom format)",
                    "hostd db backup /srv/backup/hostd-2026-12-03.dump")
    p.add_argument("file", metavar="FILE", help="the backup to write; must not exist")
    p = add_command(db, "restore", cmd_db_restore,
                    "replace the database's contents with a backup (the stack must be stopped)",
                    "hostd db restore /srv/backup/hostd.dump --yes")
    p.add_argument("file", metavar="FILE", help="a backup written by hostd db backup (or pg_dump -Fc)")
    p.add_argument("--yes", action="store_true", help="yes, replace every table the backup holds")
