"""The baselines database: a real SQLite file in the state directory."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from agent.state.baselines import FILENAME, KEEP_COUNTS, SCHEMA_VERSION, BaselineStore


def test_created_with_wal_and_schema_version(tmp_path: Path) -> None:
    store = BaselineStore.open(tmp_path / "new" / "state")
    assert store is not None
    store.add_count("shop", "catalog", 30, at=1.0)
    store.close()
    db = sqlite3.connect(tmp_path / "new" / "state" / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    again = BaselineStore.open(tmp_path / "new" / "state")  # reopening keeps the data
    assert again is not None
    assert again.recent_counts("shop", "catalog", 5) == [30.0]
    again.close()


def test_counts_are_per_check_newest_first_and_bounded(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / FILENAME)
    for i in range(KEEP_COUNTS + 5):
        store.add_count("shop", "catalog", float(i), at=float(i))
    store.add_count("shop", "other", 1.0, at=1.0)
    assert store.recent_counts("shop", "catalog", 3) == [1004.0, 1003.0, 1002.0]
    assert len(store.recent_counts("shop", "catalog", 10_000)) == KEEP_COUNTS
    assert store.recent_median("shop", "other", 10) == 1.0
    assert store.recent_median("shop", "none", 10) is None
    store.close()


def test_origins_and_run_counter(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / FILENAME)
    assert store.count_run("shop", "scripts") == 0
    assert store.count_run("shop", "scripts") == 1
    store.learn_origins("shop", "scripts", ["https://a.example", "https://a.example"], at=1.0)
    assert store.origins("shop", "scripts") == {"https://a.example"}
    assert store.origins("other", "scripts") == set()
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer than this storewatch"):
        BaselineStore(tmp_path / FILENAME)


def test_state_dir_that_is_a_file_gives_none(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        assert BaselineStore.open(blocker) is None
    assert [r.name for r in caplog.records] == ["agent.state.baselines"]
