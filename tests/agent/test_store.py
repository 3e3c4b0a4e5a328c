"""The incident store on real SQLite files and a real PostgreSQL (``state_location`` runs a test
on both): migrations, readers during a write, atomic writes."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from agent.errors import StateError
from agent.state.store import MIGRATIONS, SCHEMA_VERSION, OutboxState, Store, db_path
from classifier import Evidence, FindingKind, Level, Phase, Track

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _new_incident(store: Store, fp: str = "storewatch-000000000001") -> int:
    with store.transaction():
        return store.create_incident(
            fingerprint=fp, site="shop", check="home", kind=FindingKind.SITE_DOWN,
            level=Level.L1, now=NOW, summary="home page answered HTTP 503", rule="site-down",
            reason="L1 emergency", evidence=Evidence(url="http://shop/", status=503))


def test_a_version_1_database_is_migrated_and_keeps_its_incidents(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    old.execute("INSERT INTO incidents (fingerprint, site, check_name, kind, level, state, "
                "first_seen, last_seen, summary, rule, reason) VALUES ('storewatch-aaaaaaaaaaaa',"
                " 'shop', 'home', 'site_down', 1, 'open', 1.0, 2.0, 'down', 'site-down', 'why')")
    old.commit()
    old.close()
    store = Store(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        (incident,) = store.incidents()
        assert (incident.site, incident.state, incident.level) == ("shop", Phase.OPEN, Level.L1)
        store.save_track("storewatch-aaaaaaaaaaaa", Track(phase=Phase.OPEN))  # v2 table
        assert store.silences(NOW) == []
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(db_path(tmp_path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this agent's"):
        Store(db_path(tmp_path))


def test_open_existing_names_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=r"no incident store at .*storewatch\.db"):
        Store.open_existing(tmp_path / "nothing-here")


def test_an_incident_change_and_its_outbox_entries_commit_together(
        state_location: str | Path) -> None:
    store = Store(state_location)
    incident_id = _new_incident(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.update_incident(incident_id, state=Phase.OPEN, opened_at=NOW)
        store.enqueue(incident_id, "sqlite", "open", NOW)
        raise RuntimeError("crash in the middle")
    assert store.incident(incident_id).state is Phase.PENDING  # type: ignore[union-attr]
    assert store.outbox() == []
    store.close()


def test_one_active_incident_per_fingerprint(state_location: str | Path) -> None:
    store = Store(state_location)
    _new_incident(store)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        _new_incident(store)
    store.close()


def test_track_round_trip(state_location: str | Path) -> None:
    store = Store(state_location)
    track = Track(phase=Phase.OPEN, level=Level.L2, fails=3, sources=frozenset({"a", "b"}),
                  changes=(NOW,), flapping=True, ticketed=True, opened_at=NOW)
    with store.transaction():
        store.save_track("fp", track)
    other = Store(state_location)  # another process's view
    assert other.track("fp") == track
    assert other.track("unknown") == Track()
    other.close()
    store.close()


def test_readers_see_committed_state_while_a_writer_holds_a_transaction(
        state_location: str | Path) -> None:
    writer = Store(state_location)
    incident_id = _new_incident(writer)
    reader = Store(state_location)
    seen: list[Phase] = []
    with writer.transaction():
        writer.update_incident(incident_id, state=Phase.OPEN)
        thread = threading.Thread(
            target=lambda: seen.append(reader.incident(incident_id).state))  # type: ignore[union-attr]
        thread.start()
        thread.join(5)
    assert seen == [Phase.PENDING]  # not blocked, and no uncommitted data
    assert reader.incident(incident_id).state is Phase.OPEN  # type: ignore[union-attr]
    reader.close()
    writer.close()


def test_outbox_order_retry_and_dead_letters(state_location: str | Path) -> None:
    store = Store(state_location)
    incident_id = _new_incident(store)
    with store.transaction():
        store.enqueue(incident_id, "sqlite", "open", NOW)
        store.enqueue(incident_id, "sqlite", "resolve", NOW)
        store.enqueue(incident_id, "other", "open", NOW)
    due = store.due(NOW)
    assert [(e.sink, e.action) for e in due] == [("sqlite", "open"), ("other", "open")]
    store.mark_retry(due[0].id, NOW + timedelta(seconds=30), "HTTP 503")
    assert [e.sink for e in store.due(NOW)] == ["other"]  # the resolve waits for its open
    assert [e.sink for e in store.due(NOW + timedelta(seconds=31))] == ["other", "sqlite"]
    store.mark_dead(due[1].id, "HTTP 401", NOW)
    assert store.pending_stats(NOW + timedelta(seconds=10)) == (2, 10.0)
    (dead,) = store.outbox(OutboxState.DEAD)
    assert (dead.sink, dead.last_error, dead.attempts) == ("other", "HTTP 401", 1)
    assert store.integrity_ok()
    store.close()


def test_silences_expire(state_location: str | Path) -> None:
    store = Store(state_location)
    sid = store.add_silence("shop", None, "deploy", NOW, timedelta(minutes=30))
    assert [s.id for s in store.silences(NOW + timedelta(minutes=29))] == [sid]
    assert store.silences(NOW + timedelta(minutes=30)) == []
    assert store.remove_silence(sid) and not store.remove_silence(sid)
    store.close()


def test_the_backend_runs_portable_sql_as_written(state_location: str | Path) -> None:
    """What store code may use on both backends: ``?`` placeholders (also next to a literal
    ``%``), rows by name, ``RETURNING id``, ``rowcount``, ``executemany``, ``ON CONFLICT``."""
    store = Store(state_location)
    try:
        db = store.conn
        with store.transaction():
            db.executemany("INSERT INTO tracks (fingerprint, state) VALUES (?, ?)",
                           [("a%1", "x"), ("b?2", "y")])
            row = db.execute("INSERT INTO silences (site, check_name, reason, created_at, "
                             "expires_at) VALUES (?, NULL, '50% off?', 1.5, ?) RETURNING id",
                             ("shop", 2.5)).fetchone()
        assert row["id"] == 1
        found = db.execute("SELECT fingerprint FROM tracks WHERE fingerprint LIKE 'a%' OR "
                           "fingerprint = ? ORDER BY fingerprint", ("b?2",)).fetchall()
        assert [r["fingerprint"] for r in found] == ["a%1", "b?2"]
        assert db.execute("SELECT reason FROM silences").fetchone()["reason"] == "50% off?"
        changed = db.execute("UPDATE tracks SET state = ? WHERE state != ?", ("z", "x"))
        assert changed.rowcount == 1
        db.execute("INSERT INTO tracks (fingerprint, state) VALUES (?, ?) ON CONFLICT "
                   "(fingerprint) DO UPDATE SET state = excluded.state", ("a%1", "w"))
        assert db.execute("SELECT COUNT(*) AS n FROM tracks WHERE state IN ('w', 'z')"
                          ).fetchone()["n"] == 2
    finally:
        store.close()
