"""``hostd db current|upgrade|backup|restore`` on real PostgreSQL databases, called in-process."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hostd.cli import db as db_cli
from hostd.ops import postgres
from hostd.settings import Settings
from hostd.store import schema
from hostd.store.accounts import Accounts
from hostd.store.database import Database
from tests import pg
from tests.hostd.cli.conftest import DATABASES, Hostd, run

HEAD = schema.head()


@pytest.fixture
def accounts(data: Path) -> Iterator[Accounts]:
    """The accounts of the test's installation."""
    database = Database(DATABASES[data.resolve()])
    yield Accounts(database)
    database.close()


def test_current_and_upgrade_from_an_empty_database(hostd: Hostd, data: Path) -> None:
    url = DATABASES[data.resolve()] = pg.new_database(migrated=False)

    assert hostd("db", "current") == (0, f"none (no schema yet); the newest is {HEAD}: run hostd db upgrade\n", "")
    assert hostd("db", "upgrade") == (0, f"database upgraded from none (no schema yet) to {HEAD}\n", "")
    assert schema.current(url) == HEAD
    assert hostd("db", "current") == (0, f"{HEAD} (head)\n", "")
    assert hostd("db", "upgrade") == (0, f"database already at {HEAD} (head)\n", "")


def test_upgrade_from_an_older_revision(hostd: Hostd, data: Path) -> None:
    url = DATABASES[data.resolve()] = pg.new_database(migrated=False)
    schema.upgrade(url, "0001")
    assert hostd("db", "current")[1] == f"0001; the newest is {HEAD}: run hostd db upgrade\n"
    assert hostd("db", "upgrade")[1] == f"database upgraded from 0001 to {HEAD}\n"


def test_backup_then_restore_brings_the_data_back(hostd: Hostd, data: Path, tmp_path: Path,
                                                  accounts: Accounts) -> None:
    assert hostd("user", "add", "alice", stdin="alice-password\n")[0] == 0
    assert hostd("repo", "create", "alice/notes", "--vcs", "git")[0] == 0
    assert hostd("token", "create", "alice", "--scope", "read")[0] == 0
    before = snapshot(accounts)
    dump = tmp_path / "hostd.dump"

    code, out, _ = hostd("db", "backup", str(dump))

    assert code == 0 and out.startswith(f"backup written to {dump} (")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert not dump.with_name("hostd.dump.partial").exists()

    assert hostd("user", "add", "bob", stdin="bob-password\n")[0] == 0
    assert hostd("repo", "delete", "alice/notes")[0] == 0
    assert snapshot(accounts) != before

    code, out, _ = hostd("db", "restore", str(dump), "--yes")

    assert (code, out) == (0, f"database restored from {dump}; it is at revision {HEAD} (head)\n")
    assert snapshot(accounts) == before


def test_restore_tells_every_listening_pool_that_everything_changed(hostd: Hostd, data: Path,
                                                                    tmp_path: Path) -> None:
    """pg_restore loads rows before it creates the triggers: without hostd's own
    notifications no pool would forget its caches."""
    dump = tmp_path / "hostd.dump"
    assert hostd("db", "backup", str(dump))[0] == 0
    with psycopg.connect(DATABASES[data.resolve()], autocommit=True) as listener:
        listener.execute("LISTEN hostd_changes")
        assert hostd("db", "restore", str(dump), "--yes")[0] == 0
        heard = {note.payload for note in listener.notifies(timeout=10, stop_after=len(db_cli.NOTIFIED_TABLES))}
    assert heard == set(db_cli.NOTIFIED_TABLES)


def test_an_older_backup_is_restored_as_it_is_and_then_upgraded(hostd: Hostd, data: Path, tmp_path: Path) -> None:
    old = pg.new_database(migrated=False)
    schema.upgrade(old, "0001")
    with psycopg.connect(old, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name, password_hash, created) VALUES ('carol', NULL, 1.5)")
    dump = tmp_path / "old.dump"
    subprocess.run([postgres.server().tool("pg_dump"), "-Fc", "-f", str(dump), "-d", old], check=True)

    assert hostd("db", "restore", str(dump), "--yes")[1].endswith(f"at revision 0001; the newest is {HEAD}: "
                                                                   "run hostd db upgrade\n")
    assert hostd("db", "upgrade") == (0, f"database upgraded from 0001 to {HEAD}\n", "")
    with psycopg.connect(DATABASES[data.resolve()]) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("carol",)]


def test_a_restore_that_fails_half_way_changes_nothing(hostd: Hostd, tmp_path: Path, accounts: Accounts,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dump = tmp_path / "hostd.dump"
    assert hostd("db", "backup", str(dump))[0] == 0
    assert hostd("user", "add", "bob", stdin="bob-password\n")[0] == 0
    # The last statement fails: the tables were dropped and reloaded by then, in the same transaction.
    monkeypatch.setattr(db_cli, "NOTIFY_EVERYTHING", "SELECT 1 / 0")

    code, out, err = hostd("db", "restore", str(dump), "--yes")

    assert (code, out) == (1, "") and "psql failed" in err and "division by zero" in err
    assert accounts.users() == ["bob"]


@pytest.mark.parametrize(("prepare", "args", "message"), [
    (lambda dump: dump.write_bytes(b"x"), ("backup",), "exists; give a new file name"),
    (lambda dump: None, ("restore",), "run again with --yes"),
    (lambda dump: None, ("restore", "--yes"), "no such file"),
    (lambda dump: dump.write_bytes(b"not a dump"), ("restore", "--yes"), "is not a backup pg_restore can read"),
], ids=["backup-over-a-file", "restore-without-yes", "restore-of-nothing", "restore-of-garbage"])
def test_refusals_change_nothing(hostd: Hostd, tmp_path: Path, accounts: Accounts,
                                 prepare: Callable[[Path], Any], args: tuple[str, ...], message: str) -> None:
    assert hostd("user", "add", "alice", stdin="alice-password\n")[0] == 0
    dump = tmp_path / "hostd.dump"
    prepare(dump)
    before = dump.read_bytes() if dump.exists() else None

    code, out, err = hostd("db", args[0], str(dump), *args[1:])

    assert (code, out) == (1, "") and message in err
    assert accounts.users() == ["alice"]
    assert (dump.read_bytes() if dump.exists() else None) == before


def test_restore_refuses_while_the_stack_runs(hostd: Hostd, data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dump = tmp_path / "hostd.dump"
    assert hostd("db", "backup", str(dump))[0] == 0
    monkeypatch.setattr("hostd.ops.stack.supervisord_pid", lambda settings: 4242)
    code, _, err = hostd("db", "restore", str(dump), "--yes")
    assert code == 1 and "the stack is running: stop it first" in err


def test_the_password_goes_in_the_environment_never_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any local user can read another process's command line (ps); only its owner, its environment."""
    seen: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], *, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append((command, env))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    settings = Settings(data_dir=Path("/nonexistent"),
                        database_url="postgresql://hostd:s3cr%40t@db.example:5433/hostd?sslmode=require")
    db_cli._tool("pg_dump", settings, "--format=custom")

    [(command, env)] = seen
    assert not any("s3cr" in word for word in command)
    assert env["PGPASSWORD"] == "s3cr@t"
    assert "host=db.example" in command[1] and "port=5433" in command[1] and "sslmode=require" in command[1]


def test_with_the_stacks_own_cluster_each_command_starts_it_and_stops_it_after(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No HOSTD_DATABASE_URL: the database is the cluster in <data>/postgres, which is down when the stack is."""
    data = Path(tempfile.mkdtemp(prefix="hostd-db-cli-"))  # in /tmp itself: the postgres user must reach it
    try:
        assert run(capsys, monkeypatch, ["init", "--no-demo", "--data", str(data)])[0] == 0
        settings = Settings(data_dir=data)
        assert not postgres.running(settings)

        assert run(capsys, monkeypatch, ["db", "current", "--data", str(data)]) == (0, f"{HEAD} (head)\n", "")
        assert not postgres.running(settings)
        dump = data / "backup.dump"
        assert run(capsys, monkeypatch, ["db", "backup", str(dump), "--data", str(data)])[0] == 0
        assert run(capsys, monkeypatch, ["db", "restore", str(dump), "--yes", "--data", str(data)])[0] == 0
        assert not postgres.running(settings)
    finally:
        _stop_cluster(Settings(data_dir=data))
        shutil.rmtree(data, ignore_errors=True)


def _stop_cluster(settings: Settings) -> None:
    """Stop the cluster this test made, if a failed command left it running."""
    if postgres.running(settings):
        srv = postgres.server()
        prefix = ["runuser", "-u", srv.user, "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, srv.tool("pg_ctl"), "-D", str(settings.postgres_dir), "-m", "immediate", "stop"],
                       capture_output=True, check=False)


def snapshot(accounts: Accounts) -> dict[str, Any]:
    with accounts.db.connection() as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("users", "tokens", "repos", "grants", "flags", "pushlog")}
