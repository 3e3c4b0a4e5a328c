"""The incident store's SQLite backend: one file, WAL, ``BEGIN IMMEDIATE`` writers.

WAL mode and a busy timeout make the CLI's reads (and its rare writes) safe while the daemon
writes; ``BEGIN IMMEDIATE`` takes SQLite's single write lock at the start of a transaction, so
several processes sharing the file never interleave a read-modify-write. The schema version is
``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import StateError

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, a busy timeout and row access by name."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the incident store {path}: {exc}") from None
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite already rolled back after e.g. SQLITE_FULL
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def statements(script: str) -> list[str]:
    """The statements of a migration script (split on ``;``)."""
    return [s.strip() for s in script.split(";") if s.strip()]


class SqliteDatabase:
    """The store in one SQLite file (see the module docstring)."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {path.parent}: "
                             f"{exc.strerror or exc}") from None
        self.conn = connect(path)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement."""
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``."""
        with immediate(self.conn):
            yield

    def migrate(self, migrations: Sequence[str]) -> int:
        """Apply the missing migrations, each in its own ``BEGIN IMMEDIATE`` transaction (the
        write lock makes a second process starting at once skip what the first applied)."""
        found = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if found > len(migrations):
            raise StateError(f"the incident store has schema version {found}, newer than this "
                             f"agent's {len(migrations)}; upgrade storewatch")
        for version in range(found, len(migrations)):
            with immediate(self.conn):
                current = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
                if current != version:  # another process migrated meanwhile
                    continue
                for statement in statements(migrations[version]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
        return found

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` says ok."""
        return bool(self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
