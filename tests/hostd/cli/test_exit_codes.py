"""The exit-code table of :mod:`hostd.cli.main`, one test per row.

Each row is shown twice where the world allows: raised by a real failure
(a wrong command line, a database that is not there, an unreadable secret...), and raised
by a stand-in command, so every row, even one no command reaches today, is
known to print one ``hostd: ...`` line and exit with its code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg
import pytest

from hostd.cli import repos
from hostd.cli.errors import CommandError, NotInstalled, UsageError
from hostd.cli.main import EXIT_CODES
from hostd.ops.haproxy import PoolError, StackError
from hostd.settings import SettingsError
from hostd.store.accounts import AccountError
from hostd.store.database import Database, DatabaseUnavailable
from hostd.store.flags import FlagError, FlagStore
from hostd.store.legacy import LegacyImportError
from hostd.store.storage import StorageError
from tests.hostd.cli.conftest import DATABASES, Hostd

ROWS: list[tuple[BaseException, int, str]] = [
    (UsageError("--data given twice", "usage: hostd repo list\n"), 2, "hostd: --data given twice"),
    (NotInstalled(Path("/nowhere"), Path("/nowhere")), 1, "hostd: no hostd installation at /nowhere"),
    (CommandError("no such repository: a/b"), 1, "hostd: no such repository: a/b"),
    (AccountError("no such user: bob"), 1, "hostd: no such user: bob"),
    (StorageError("a/b: a symlink in the repository tree"), 1, "hostd: a/b: a symlink in the repository tree"),
    (FlagError("unknown flag 'x'"), 1, "hostd: unknown flag 'x'"),
    (StackError("haproxy.cfg is invalid"), 1, "hostd: haproxy.cfg is invalid"),
    (SettingsError("HOSTD_WORKERS must be positive"), 1, "hostd: HOSTD_WORKERS must be positive"),
    (LegacyImportError("users: row 'bob' differs after the import"), 1,
     "hostd: users: row 'bob' differs after the import"),
    (DatabaseUnavailable("connection refused"), 1, "hostd: database unreachable: connection refused"),
    (psycopg.errors.UndefinedTable('relation "users" does not exist'), 1,
     'hostd: database: relation "users" does not exist'),
    (PermissionError(13, "Permission denied", "/srv/hostd/secret"), 1,
     "hostd: [Errno 13] Permission denied: '/srv/hostd/secret'"),
    (KeyboardInterrupt(), 130, "hostd: interrupted"),
]


def test_every_row_is_tested() -> None:
    assert [row.kind for row in EXIT_CODES] == [
        UsageError, NotInstalled, CommandError, AccountError, StorageError, FlagError, StackError,
        SettingsError, LegacyImportError, DatabaseUnavailable, psycopg.Error, OSError, KeyboardInterrupt]
    assert all(any(isinstance(error, row.kind) for error, _, _ in ROWS) for row in EXIT_CODES)


@pytest.mark.parametrize(("error", "code", "line"), ROWS, ids=[type(e).__name__ for e, _, _ in ROWS])
def test_row(error: BaseException, code: int, line: str, hostd: Hostd, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(args: argparse.Namespace) -> None:
        raise error

    monkeypatch.setattr(repos, "cmd_repo_list", fails)
    status, out, err = hostd("repo", "list")
    assert (status, out) == (code, "")
    assert err.splitlines()[-1].startswith(line) and err.endswith("\n")
    assert err.count("\n") == (2 if isinstance(error, UsageError) else 1)  # usage, then the reason


def test_an_unexpected_error_keeps_its_traceback(hostd: Hostd, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(args: argparse.Namespace) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(repos, "cmd_repo_list", bug)
    with pytest.raises(ZeroDivisionError):
        hostd("repo", "list")


# The same rows, raised by what really goes wrong.

def test_usage_error_shows_the_command_usage_then_the_reason(hostd: Hostd) -> None:
    code, _, err = hostd("token", "create", "alice", "--expires-days", "0")
    assert code == 2
    assert err.startswith("usage: hostd token create ")
    assert err.splitlines()[-1] == "hostd: argument --expires-days: 0 is not positive"


def test_a_command_error(hostd: Hostd) -> None:
    assert hostd("log", "alice/none") == (1, "", "hostd: no such repository: alice/none\n")


def test_an_account_error(hostd: Hostd) -> None:
    assert hostd("user", "del", "nobody") == (1, "", "hostd: no such user: nobody\n")


def test_a_storage_error_leaves_no_row_behind(hostd: Hostd, data: Path) -> None:
    hostd("user", "add", "alice", stdin="s3cret-password\n")
    (data / "repos" / "alice" / "notes").mkdir(parents=True)  # left over, not in the database
    code, _, err = hostd("repo", "create", "alice/notes", "--vcs", "hg")
    assert (code, err) == (1, f"hostd: {data / 'repos' / 'alice' / 'notes'} already exists\n")
    assert hostd("repo", "list") == (0, "", "")


def test_a_stack_error(hostd: Hostd) -> None:
    code, _, err = hostd("pool", "list")
    assert code == 1 and err.count("\n") == 1 and "is the stack running?" in err
    assert issubclass(PoolError, StackError)


def test_a_settings_error(hostd: Hostd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTD_WORKERS", "none")
    code, _, err = hostd("repo", "list")
    assert code == 1 and err.count("\n") == 1 and err.startswith("hostd: HOSTD_WORKERS")


def test_a_database_that_is_not_there(hostd: Hostd, data: Path, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    """HOSTD_DATABASE_URL naming a socket directory where no server listens."""
    monkeypatch.setitem(DATABASES, data.resolve(), f"postgresql://hostd@/hostd?host={tmp_path}")
    code, out, err = hostd("repo", "list")
    assert (code, out) == (1, "")
    assert err.startswith("hostd: database unreachable: ") and err.count("\n") == 1


def test_an_os_error_before_anything_was_written(hostd: Hostd, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = data / "secret"
    read_bytes = Path.read_bytes

    def unreadable(path: Path) -> bytes:
        if path == secret:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    code, out, err = hostd("flag", "set", "read_only", "on")
    assert (code, out) == (1, "")
    assert err == f"hostd: [Errno 13] Permission denied: '{secret}'\n"
    db = Database(DATABASES[data.resolve()])
    assert FlagStore(db).get("read_only") is None
    db.close()
