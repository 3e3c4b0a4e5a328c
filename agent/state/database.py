"""Where the incident store lives, and the small interface both of its backends implement.

``agent.state`` names the store: unset, it is the SQLite file ``<agent.state_dir>/storewatch.db``
(agent/state/sqlite.py); a ``postgresql://`` URL selects PostgreSQL (agent/state/postgres.py,
the ``postgres`` extra). The ``Store`` (agent/state/store.py) writes its SQL once, portable:

* ``?`` placeholders (PostgreSQL's backend turns them into ``%s``), rows read by column name;
* column types only ``INTEGER``, ``INTEGER PRIMARY KEY`` (ids), ``REAL`` (Unix seconds),
  ``TEXT``; PostgreSQL's backend translates them in migrations (``ddl``);
* ``INSERT … RETURNING id`` instead of ``lastrowid``; ``ON CONFLICT … DO …``;
* every write that belongs together inside ``transaction()``, which serialises writers on both
  backends (SQLite's single writer; on PostgreSQL one advisory lock taken first), so a
  read-modify-write in a transaction is safe across agents sharing the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

DB_NAME = "storewatch.db"
POSTGRES_SCHEMES = ("postgresql", "postgres")

Row = Any
"""A result row: ``row["column"]`` (and ``row[0]``) on both backends."""


class Rows(Protocol):
    """The result of ``Database.execute``: a cursor on either backend."""

    @property
    def rowcount(self) -> int:
        """Rows an UPDATE/DELETE changed."""
        ...

    def fetchone(self) -> Row:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Row]:
        """The remaining rows."""
        ...

    def __iter__(self) -> Iterator[Row]: ...


class Database(Protocol):
    """One connection to the store's database, on SQLite or PostgreSQL."""

    kind: str
    """``sqlite`` or ``postgresql``."""
    where: str
    """The database for messages: the file, or the URL without its password."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        """Run one statement (``?`` placeholders) outside or inside ``transaction()``."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction, writers serialised across processes; rolled back on error."""
        ...

    def migrate(self, migrations: Sequence[str]) -> int:
        """Apply the missing ``migrations`` under a lock; return the version found before."""
        ...

    def integrity_ok(self) -> bool:
        """The backend's own consistency check passes (PostgreSQL: the server answers)."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


def db_path(state_dir: Path) -> Path:
    """Where the SQLite store of ``state_dir`` lives."""
    return state_dir / DB_NAME


def is_postgres_url(location: str | Path) -> bool:
    """Whether ``location`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(location, str) and location.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def state_location(state: str | None, state_dir: Path) -> str | Path:
    """The store an agent's config names: ``agent.state``, else the SQLite file of
    ``agent.state_dir``."""
    if state is None:
        return db_path(state_dir)
    return state if is_postgres_url(state) else Path(state)


def redacted(url: str) -> str:
    """A PostgreSQL URL fit for logs and messages: the password (and query options, which can
    hold one) left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def is_driver_error(exc: BaseException) -> bool:
    """An error of a database driver (sqlite3 or psycopg), e.g. a failed statement."""
    return type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg")


def open_database(location: str | Path) -> Database:
    """A connection to the store at ``location`` (a SQLite file path or a PostgreSQL URL);
    a StateError when it cannot be opened."""
    if is_postgres_url(location):
        from agent.state.postgres import PostgresDatabase

        return PostgresDatabase(str(location))
    from agent.state.sqlite import SqliteDatabase

    return SqliteDatabase(Path(location))
