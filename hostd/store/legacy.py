"""The one-time import of an older release's SQLite database (``<data>/hostd.db``) into PostgreSQL.

Releases before PostgreSQL kept every account, token, repository, grant,
flag and push-log entry in one SQLite file. The first start of this release
(:func:`hostd.ops.bootstrap.initialize`, after the schema is migrated)
calls :func:`import_once`, which:

1. reads the six tables from the file, opened read-only, in one read
   transaction (a consistent snapshot, including what is still only in its
   ``-wal`` file; SQLite may make a ``-shm`` beside it to read that), and
   checks every value has the type the old schema meant (0/1 for booleans,
   numbers for times, text without NUL characters);
2. in one PostgreSQL transaction, with the tables locked against writers,
   inserts every row (push-log ids kept, so ``hostd log`` keeps its order,
   and the id sequence moved past them), re-reads every row and compares it
   with the file's, column by column; any difference rolls everything back
   and raises :class:`LegacyImportError` naming the table and the row;
3. after the commit, sets the file aside as ``hostd.db.imported-<UTC time>``
   (with its ``-wal``/``-shm``, under the same name so SQLite still finds
   them), mode 0600: never imported twice, kept as the backup.

A crash at any point leaves something the next start completes. Before the
commit, PostgreSQL has nothing and the file is where it was: the import runs
again. After the commit but before the file is set aside, the database holds
exactly the file's rows: the next start finds them equal and only sets the
file aside. Setting aside first makes the backup names (hard links, so no
copy and no window without a complete file), then removes ``hostd.db`` (the
one step after which the file is never looked at again), then its
companions. Into a database that holds anything else, nothing is imported.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from hostd.store.database import Connection, Database
from hostd.store.spool import sync_directory

logger = logging.getLogger(__name__)

Row = tuple[Any, ...]
#: What a value of the file must be, and what it becomes: raises ValueError(why) when it is not.
Normalize = Callable[[Any], Any]


class LegacyImportError(Exception):
    """The SQLite file could not be imported as it is; nothing was changed."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} where text belongs")
    if "\x00" in value:
        raise ValueError("text with a NUL character (PostgreSQL text cannot hold one)")
    return value


def _real(value: Any) -> float:
    # A time: SQLite may hand back an int for a REAL column written as one.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} where a finite number belongs")
    return float(value)


def _integer(bits: int) -> Normalize:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise ValueError(f"{value!r} where a {bits}-bit whole number belongs")
        return value
    return check


def _boolean(value: Any) -> bool:
    # SQLite has no booleans: the old release wrote 0 and 1, and nothing else means anything.
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise ValueError(f"{value!r} where 0 or 1 belongs")
    return value == 1


def _optional(normalize: Normalize) -> Normalize:
    def check(value: Any) -> Any:
        return None if value is None else normalize(value)
    return check


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the old schema: its columns with their types, and its primary key."""

    name: str
    columns: tuple[tuple[str, Normalize], ...]
    key: tuple[str, ...]
    #: Its ``id`` is a GENERATED ALWAYS identity column, whose sequence must follow the file's ids.
    identity: bool = False
    names: tuple[str, ...] = field(init=False)
    _key_at: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(column for column, _ in self.columns)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_key_at", tuple(names.index(column) for column in self.key))

    def key_of(self, row: Row) -> Row:
        return tuple(row[i] for i in self._key_at)

    def describe(self, key: Row) -> str:
        return f"{self.name} row " + ", ".join(f"{c}={v!r}" for c, v in zip(self.key, key, strict=True))


_TEXT, _REAL, _BOOL = _text, _real, _boolean
#: The SQLite release's schema (``git show 6c5e996:hostd/store/database.py``),
#: in the order that satisfies its foreign keys.
TABLES: tuple[Table, ...] = (
    Table("users", (("name", _TEXT), ("password_hash", _optional(_TEXT)), ("credential_version", _integer(32)),
                    ("created", _REAL)), ("name",)),
    Table("repos", (("owner", _TEXT), ("name", _TEXT), ("vcs", _TEXT), ("public", _BOOL), ("created", _REAL)),
          ("owner", "name")),
    Table("tokens", (("id", _TEXT), ("username", _TEXT), ("secret_hash", _TEXT), ("scope", _TEXT),
                     ("expires_at", _optional(_REAL)), ("revoked", _BOOL), ("created", _REAL)), ("id",)),
    Table("grants", (("username", _TEXT), ("owner", _TEXT), ("name", _TEXT), ("level", _TEXT)),
          ("username", "owner", "name")),
    Table("flags", (("name", _TEXT), ("value", _BOOL)), ("name",)),
    Table("pushlog", (("id", _integer(64)), ("owner", _TEXT), ("name", _TEXT), ("username", _TEXT), ("at", _REAL),
                      ("ref", _TEXT), ("old", _TEXT), ("new", _TEXT)), ("id",), identity=True),
)

#: Files SQLite keeps beside a database, set aside with it.
COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_once` did: rows per table, where the file went, and
    whether this run only finished an earlier one."""

    counts: tuple[tuple[str, int], ...]
    backup: Path
    #: The rows were already in PostgreSQL (a start that stopped after the commit): only the file was set aside.
    resumed: bool = False

    def summary(self) -> str:
        """One line for the operator."""
        rows = ", ".join(f"{count} {table}" for table, count in self.counts)
        verb = "already imported" if self.resumed else "imported and verified"
        return f"SQLite database {verb} ({rows}); the file is kept as {self.backup}"


def import_once(path: Path, db: Database, *, clock: Callable[[], float] = time.time) -> ImportReport:
    """Import ``path`` into ``db`` (at the newest schema), verify every row, and set the file aside."""
    rows = read_sqlite(path)
    with db.transaction() as conn:
        # Nobody writes while the target is found empty and filled: another
        # host's pool (an external database) must not slip a row in between.
        conn.execute("LOCK TABLE " + ", ".join(t.name for t in TABLES) + " IN EXCLUSIVE MODE")
        before = read_postgres(conn)
        resumed = any(before.values())
        if resumed:
            problem = difference(rows, before)
            if problem is not None:
                raise LegacyImportError(
                    f"{path} was not imported: the database already holds other data ({problem}). "
                    "If that data is what you want, move the file aside yourself; to import the file, "
                    "point hostd at an empty database"
                )
        else:
            _insert(conn, rows)
            problem = difference(rows, read_postgres(conn))
            if problem is not None:
                raise LegacyImportError(f"{path} was not imported: verification failed, nothing was kept: {problem}")
    backup = set_aside(path, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock())))
    report = ImportReport(tuple((t.name, len(rows[t.name])) for t in TABLES), backup, resumed)
    logger.warning("%s", report.summary())
    return report


def read_sqlite(path: Path) -> dict[str, list[Row]]:
    """Every row of the six tables, normalized, from one read transaction on the file opened read-only."""
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise LegacyImportError(f"cannot open {path}: {error}") from error
    try:
        conn.execute("BEGIN")  # one snapshot for all six tables
        return {table.name: _normalized(table, conn.execute(f"SELECT {', '.join(table.names)} FROM {table.name}"))
                for table in TABLES}
    except sqlite3.Error as error:
        raise LegacyImportError(f"cannot read {path} as a hostd SQLite database: {error}") from error
    finally:
        conn.close()


def _normalized(table: Table, cursor: Iterable[Row]) -> list[Row]:
    rows = []
    for raw in cursor:
        row = []
        for (column, normalize), value in zip(table.columns, raw, strict=True):
            try:
                row.append(normalize(value))
            except ValueError as why:
                raise LegacyImportError(f"{table.describe(table.key_of(raw))}: column {column}: {why}") from None
        rows.append(tuple(row))
    return rows


def read_postgres(conn: Connection) -> dict[str, list[Row]]:
    """Every row of the six tables as PostgreSQL holds them."""
    result = {}
    for table in TABLES:
        with conn.cursor(row_factory=psycopg.rows.tuple_row) as cursor:
            result[table.name] = list(cursor.execute(f"SELECT {', '.join(table.names)} FROM {table.name}"))
    return result


def difference(expected: dict[str, list[Row]], actual: dict[str, list[Row]]) -> str | None:
    """The first row that differs between the file's rows and PostgreSQL's, named by table and key; None when equal."""
    for table in TABLES:
        wanted = {table.key_of(row): row for row in expected[table.name]}
        for row in actual[table.name]:
            key = table.key_of(row)
            original = wanted.pop(key, None)
            if original is None:
                return f"{table.describe(key)} is in PostgreSQL but not in the file"
            # type() too: True == 1 and 1.0 == 1 in Python, not in a schema.
            if original == row and tuple(map(type, original)) == tuple(map(type, row)):
                continue
            for column, want, got in zip(table.names, original, row, strict=True):
                if want != got or type(want) is not type(got):
                    return f"{table.describe(key)}: column {column} differs"
        if wanted:
            return f"{table.describe(next(iter(wanted)))} is in the file but not in PostgreSQL"
    return None


def _insert(conn: Connection, rows: dict[str, list[Row]]) -> None:
    for table in TABLES:
        if not rows[table.name]:
            continue
        try:
            # COPY writes the file's values into the identity column too (as
            # INSERT ... OVERRIDING SYSTEM VALUE would), at a tenth of the time.
            with conn.cursor() as cursor, cursor.copy(
                    f"COPY {table.name} ({', '.join(table.names)}) FROM STDIN") as copy:
                for row in rows[table.name]:
                    copy.write_row(row)
        except psycopg.errors.IntegrityError as error:
            # A row the old schema let in that this one refuses (a dangling reference, a bad level).
            detail = error.diag.message_detail or ""
            raise LegacyImportError(f"{table.name}: {error.diag.message_primary} {detail}".strip()) from error
        if table.identity:
            # New entries must continue after the file's ids, never collide with them.
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), max(id)) FROM {table.name}")


def set_aside(path: Path, stamp: str) -> Path:
    """Rename ``path`` and its companions to ``<name>.imported-<stamp>`` (0600); returns the new name of ``path``.

    Hard links first, so a complete backup exists before anything is
    removed; an earlier attempt's links to the same file are reused.
    """
    backup = _earlier_backup(path) or path.with_name(f"{path.name}.imported-{stamp}")
    for suffix in ("", *COMPANIONS):
        source, target = Path(f"{path}{suffix}"), Path(f"{backup}{suffix}")
        if not source.exists():
            continue
        if target.exists() and not os.path.samefile(source, target):
            # An earlier attempt's companion, since replaced (SQLite makes
            # them anew on open): the one beside the file now is the one
            # that belongs to it.
            target.unlink()
        if not target.exists():
            os.link(source, target)
        os.chmod(target, 0o600)  # it holds password and token hashes
    sync_directory(path.parent)
    path.unlink()  # from here on the file is never imported again
    sync_directory(path.parent)
    for suffix in COMPANIONS:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    sync_directory(path.parent)
    return backup


def _earlier_backup(path: Path) -> Path | None:
    for candidate in path.parent.glob(f"{path.name}.imported-*"):
        if not candidate.name.endswith(COMPANIONS) and os.path.samefile(candidate, path):
            return candidate
    return None
