"""What probes remember between runs: recent product counts and learned script origins.

One SQLite file, ``<state_dir>/baselines.db`` (WAL, created when missing, schema version in
``PRAGMA user_version``). The incident store lives in another file; nothing else goes here.
Calls are short and serialised by a lock, so probes call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import sqlite3
import statistics
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "baselines.db"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (
    site TEXT NOT NULL, check_name TEXT NOT NULL, at REAL NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS counts_by_check ON counts (site, check_name, at);
CREATE TABLE IF NOT EXISTS origins (
    site TEXT NOT NULL, check_name TEXT NOT NULL, origin TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (site, check_name, origin)
);
CREATE TABLE IF NOT EXISTS runs (
    site TEXT NOT NULL, check_name TEXT NOT NULL, runs INTEGER NOT NULL,
    PRIMARY KEY (site, check_name)
);
"""
KEEP_COUNTS = 1000
"""Counts kept per check; older ones are deleted."""


class BaselineStore:
    """The baselines database of one state directory."""

    def __init__(self, path: Path, seed: Path | None = None) -> None:
        """Open ``path``; ``path`` ``:memory:`` with ``seed``: a scratch copy of that file."""
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if seed is not None:
            source = sqlite3.connect(f"{seed.resolve().as_uri()}?mode=ro", uri=True)
            try:
                source.backup(self._db)
            finally:
                source.close()
        else:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise sqlite3.DatabaseError(f"{path} has schema version {version}, newer than "
                                        f"this storewatch ({SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")

    @classmethod
    def open(cls, state_dir: Path) -> BaselineStore | None:
        """The store in ``state_dir`` (created if missing), or None with one log line."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            return cls(state_dir / FILENAME)
        except (OSError, sqlite3.Error) as exc:
            log.warning("baselines not saved: %s is not usable (%s); catalog and script "
                        "baselines are not learned", state_dir, exc)
            return None

    @classmethod
    def scratch(cls, state_dir: Path | None) -> BaselineStore:
        """A store in memory, seeded from ``state_dir``'s baselines when they are readable:
        what ``storewatch check`` uses without an explicit state directory, so it judges
        against the daemon's baselines but never writes to them."""
        seed = state_dir / FILENAME if state_dir is not None else None
        if seed is not None and seed.is_file():
            try:
                return cls(Path(":memory:"), seed)
            except sqlite3.Error as exc:
                log.info("baselines in %s not readable (%s); this run starts from none",
                         state_dir, exc)
        return cls(Path(":memory:"))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def add_count(self, site: str, check: str, value: float, at: float) -> None:
        """Remember one run's count."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO counts VALUES (?, ?, ?, ?)", (site, check, at, value))
            self._db.execute(
                "DELETE FROM counts WHERE site = ? AND check_name = ? AND at < COALESCE(("
                "SELECT at FROM counts WHERE site = ? AND check_name = ? ORDER BY at DESC "
                "LIMIT 1 OFFSET ?), -1)", (site, check, site, check, KEEP_COUNTS - 1))

    def recent_counts(self, site: str, check: str, limit: int) -> list[float]:
        """The last ``limit`` counts, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT value FROM counts WHERE site = ? AND check_name = ? "
                "ORDER BY at DESC LIMIT ?", (site, check, limit)).fetchall()
        return [float(r[0]) for r in rows]

    def recent_median(self, site: str, check: str, limit: int) -> float | None:
        """Median of the last ``limit`` counts (None before the first)."""
        counts = self.recent_counts(site, check, limit)
        return statistics.median(counts) if counts else None

    def origins(self, site: str, check: str) -> set[str]:
        """Script origins learned for a check."""
        with self._lock:
            rows = self._db.execute("SELECT origin FROM origins WHERE site = ? AND check_name = ?",
                                    (site, check)).fetchall()
        return {str(r[0]) for r in rows}

    def learn_origins(self, site: str, check: str, origins: Iterable[str], at: float) -> None:
        """Add origins to a check's learned baseline."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO origins VALUES (?, ?, ?, ?)",
                                 [(site, check, o, at) for o in sorted(set(origins))])

    def runs_counted(self, site: str, check: str) -> int:
        """How many runs of a learning check have been counted."""
        with self._lock:
            row = self._db.execute("SELECT runs FROM runs WHERE site = ? AND check_name = ?",
                                   (site, check)).fetchone()
        return int(row[0]) if row else 0

    def count_run(self, site: str, check: str) -> int:
        """Count a run of a learning check; returns how many runs came before this one."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            row = self._db.execute("SELECT runs FROM runs WHERE site = ? AND check_name = ?",
                                   (site, check)).fetchone()
            before = int(row[0]) if row else 0
            self._db.execute("INSERT INTO runs VALUES (?, ?, 1) ON CONFLICT (site, check_name) "
                             "DO UPDATE SET runs = runs + 1", (site, check))
        return before
