"""The incident store on a real PostgreSQL: schema and migrations, writers serialised across
processes, the portable SQL's translation, and one-line errors that never show the password."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from agent.errors import StateError
from agent.state.health import is_state_error
from agent.state.postgres import WRITER_LOCK, PostgresDatabase, ddl, placeholders
from agent.state.store import MIGRATIONS, SCHEMA_VERSION, Store
from classifier import Evidence, FindingKind, Level, Phase, Track
from tests.conftest import ROOT, storewatch
from tests.pgcluster import PostgresCluster, free_port

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def columns(url: str, table: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT column_name, data_type, is_identity FROM "
                            "information_schema.columns WHERE table_name = %s", (table,))
        return {name: f"{kind}{' identity' if ident == 'YES' else ''}"
                for name, kind, ident in rows}


def test_an_empty_database_gets_the_whole_schema_with_postgres_types(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        assert store.kind == "postgresql"
        assert isinstance(store.conn, PostgresDatabase)
        assert store.conn.schema_version() == SCHEMA_VERSION
        assert store.integrity_ok()
    finally:
        store.close()
    incidents = columns(pg_url, "incidents")
    assert incidents["id"] == "bigint identity"
    assert incidents["level"] == "bigint"
    assert incidents["first_seen"] == "double precision"
    assert incidents["summary"] == "text"
    assert columns(pg_url, "schema_version") == {"version": "bigint"}


def test_an_older_schema_is_migrated_and_keeps_its_incidents(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what a version-1 agent left
        conn.execute(ddl(MIGRATIONS[0]).encode())
        conn.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO incidents (fingerprint, site, check_name, kind, level, state, "
                     "first_seen, last_seen, summary, rule, reason) VALUES "
                     "('storewatch-aaaaaaaaaaaa', 'shop', 'home', 'site_down', 1, 'open', 1.0, "
                     "2.0, 'down', 'site-down', 'why')")
    store = Store(pg_url)
    try:
        assert store.conn.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
        (incident,) = store.incidents()
        assert (incident.site, incident.state, incident.level) == ("shop", Phase.OPEN, Level.L1)
        with store.transaction():
            store.save_track("storewatch-aaaaaaaaaaaa", Track(phase=Phase.OPEN))  # v2 table
        assert store.silences(NOW) == []
        new_id = store.add_silence("shop", None, "deploy", NOW, NOW - NOW)
        assert new_id == 1  # identity ids, RETURNING id
    finally:
        store.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError, match="newer than this agent's"):
        Store(pg_url)


def test_agents_starting_at_once_migrate_exactly_once(pg_url: str) -> None:
    """Four processes open the same empty database at the same moment (they wait on one file
    before opening): one migrates under the lock, the others find the schema done."""
    go = Path(f"/tmp/storewatch-go-{free_port()}")
    script = textwrap.dedent(f"""
        import os, sys, time
        from agent.state.store import Store
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        store = Store(sys.argv[1])
        print(store.conn.schema_version())
        store.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_url], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        go.unlink(missing_ok=True)
    assert [(p.returncode, out.strip(), err) for p, (out, err) in zip(procs, outputs,
                                                                      strict=True)] \
        == [(0, str(SCHEMA_VERSION), "")] * 4
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)


@pytest.mark.parametrize("default", ["read committed", "repeatable read"])
def test_transactions_serialise_read_modify_write_across_connections(pg_url: str,
                                                                    default: str) -> None:
    """Four stores (as four agents) each add 25 to one counter with a read, then a write, in
    ``transaction()``: without the writer lock, concurrent reads would lose increments (and
    with a REPEATABLE READ database default, reads after the lock would be stale)."""
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} SET "
                     f"default_transaction_isolation = '{default}'".encode())

    def bump() -> None:
        store = Store(pg_url)
        try:
            for _ in range(25):
                with store.transaction():
                    track = store.track("counter")
                    store.save_track("counter", Track(fails=track.fails + 1))
        finally:
            store.close()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    store = Store(pg_url)
    try:
        assert store.track("counter").fails == 100
    finally:
        store.close()


def test_a_transaction_holds_the_writer_lock_until_it_ends(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            lock = "SELECT pg_try_advisory_xact_lock(%s)"
            with store.transaction(), other.transaction():
                assert other.execute(lock, (WRITER_LOCK,)).fetchone() == (False,)
            with other.transaction():
                assert other.execute(lock, (WRITER_LOCK,)).fetchone() == (True,)
    finally:
        store.close()


def test_portable_sql_is_translated_once_and_literals_are_kept() -> None:
    assert placeholders("SELECT * FROM t WHERE a = ? AND b LIKE 'x?%' AND c = ?") == \
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x?%%' AND c = %s"
    assert ddl("id INTEGER PRIMARY KEY, n INTEGER NOT NULL, at REAL, s TEXT") == (
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, "
        "at DOUBLE PRECISION, s TEXT")


def test_rows_are_read_by_name_and_position(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        with store.transaction():
            incident_id = store.create_incident(
                fingerprint="fp", site="shop", check="home", kind=FindingKind.SITE_DOWN,
                level=Level.L1, now=NOW, summary="down", rule="site-down", reason="why",
                evidence=Evidence(url="http://shop/", status=503))
        row = store.conn.execute("SELECT id, site FROM incidents WHERE id = ?",
                                 (incident_id,)).fetchone()
        assert (row["id"], row["site"], row[0], row[1]) == (incident_id, "shop", incident_id,
                                                             "shop")
        assert list(row.keys()) == ["id", "site"]
    finally:
        store.close()


def test_an_unreachable_server_is_a_one_line_state_error_without_the_password() -> None:
    secret = "Pw-canary-7f3a9c"
    url = f"postgresql://storewatch:{secret}@127.0.0.1:{free_port()}/storewatch"
    with pytest.raises(StateError) as caught:
        Store(url)
    message = str(caught.value)
    assert secret not in message and "\n" not in message
    assert message.startswith("cannot connect to the incident store "
                              "postgresql://storewatch@127.0.0.1:")
    assert "Connection refused" in message or "connection failed" in message


def test_the_store_connects_again_after_the_server_restarts(tmp_path: Path) -> None:
    with PostgresCluster(user="storewatch", database="storewatch") as cluster:
        store = Store(cluster.url())
        try:
            store.add_silence("shop", None, "before", NOW, NOW - NOW)
            cluster.pause()
            with pytest.raises(psycopg.OperationalError):  # the lost connection, once
                store.silences(NOW - (NOW - datetime(2026, 1, 1, tzinfo=UTC)))
            with pytest.raises(StateError, match="cannot connect"):  # server still down
                store.silences(NOW)
            cluster.resume()
            assert [s.reason for s in store.silences(datetime(2026, 1, 1, tzinfo=UTC))] \
                == ["before"]
        finally:
            store.close()


@pytest.mark.parametrize(("state", "message"), [
    ("postgresql://storewatch:{pw}@db.example:notaport/storewatch",
     "not a valid PostgreSQL URL (the port is not a number from 1 to 65535)"),
    ("postgresql://storewatch:{pw}@db.example/storewatch?bogus=1",
     "not a valid PostgreSQL URL (invalid URI query parameter); write "
     "postgresql://USER@HOST[:PORT]/DB"),
    ("mysql://storewatch:{pw}@db.example/storewatch",
     "expected a postgresql:// URL or the path of a SQLite file"),
], ids=["port", "query", "scheme"])
def test_a_bad_state_url_is_one_line_at_validate_without_the_password(
        tmp_path: Path, state: str, message: str) -> None:
    secret = "Pw-canary-51be0d"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pgpass").write_text(secret)
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        agent:
          state_dir: {tmp_path / 'state'}
          state: "{state.format(pw='${cred:pgpass}')}"
        sites:
          - name: shop
            base_url: http://127.0.0.1:9/
            checks:
              - name: home
                path: /
        """))
    proc = storewatch("validate", "-c", str(config), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"storewatch: {config}:3: agent.state: {message}"]
    assert secret not in proc.stdout + proc.stderr


def test_a_postgres_url_without_the_driver_says_which_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.state.postgres

    monkeypatch.setattr(agent.state.postgres, "psycopg", None)
    with pytest.raises(StateError) as caught:
        Store("postgresql://storewatch:Pw-canary-x1@db.example/storewatch")
    assert str(caught.value) == (
        "cannot use the incident store postgresql://storewatch@db.example/storewatch: "
        "PostgreSQL state needs the 'postgres' extra (pip install 'storewatch[postgres]')")


def test_a_writer_waits_for_the_lock_at_most_lock_timeout(pg_url: str) -> None:
    """Another agent holding the writer lock too long: the write fails as a state error (tried
    again by the service), like SQLite's busy timeout; here 0.3 s instead of 10 s."""
    Store(pg_url).close()
    store = Store(pg_url + "?options=-c%20lock_timeout%3D300")
    try:
        with psycopg.connect(pg_url, autocommit=True) as other, other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            with pytest.raises(psycopg.errors.LockNotAvailable) as caught, store.transaction():
                pass
            assert is_state_error(caught.value)
        with store.transaction():  # free again
            store.save_track("fp", Track())
    finally:
        store.close()
