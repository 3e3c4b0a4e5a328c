"""The incident store: SQLite (WAL) at ``<state_dir>/storewatch.db``.

Holds incidents and their event history, the lifecycle state of every fingerprint, the ticket
outbox, the tickets sinks created, silences, and the built-in sqlite sink's local tickets.

* Versioned schema: ``MIGRATIONS[i]`` takes the database from ``user_version`` i to i+1; opening
  a store applies the missing ones in one transaction each.
* WAL mode and a busy timeout make the CLI's reads (and its rare writes: manual resolve,
  silences) safe while the daemon writes.
* Every write that belongs together (an incident's change, its history and its outbox entries)
  happens in one ``BEGIN IMMEDIATE`` transaction (``Store.transaction``), so a ``kill -9`` leaves
  either all of it or none of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.errors import StateError
from classifier import Evidence, FindingKind, Level, Phase, Track

DB_NAME = "storewatch.db"
BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: incidents, their history, the outbox and the tickets sinks created.
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        site TEXT NOT NULL,
        check_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        level INTEGER,
        state TEXT NOT NULL CHECK (state IN ('pending', 'open', 'resolved')),
        flapping INTEGER NOT NULL DEFAULT 0,
        silenced TEXT,
        first_seen REAL NOT NULL,
        opened_at REAL,
        last_seen REAL NOT NULL,
        resolved_at REAL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        summary TEXT NOT NULL,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '{}',
        suppressed TEXT NOT NULL DEFAULT '[]',
        causes TEXT NOT NULL DEFAULT '[]'
    );
    CREATE UNIQUE INDEX incidents_one_active ON incidents (fingerprint)
        WHERE state != 'resolved';
    CREATE INDEX incidents_site ON incidents (site, state);
    CREATE TABLE incident_events (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        at REAL NOT NULL,
        type TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX incident_events_incident ON incident_events (incident_id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        sink TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('open', 'update', 'resolve')),
        event_kind TEXT,
        text TEXT,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'dead')),
        last_error TEXT,
        done_at REAL
    );
    CREATE INDEX outbox_pending ON outbox (state, next_at);
    CREATE TABLE tickets (
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        sink TEXT NOT NULL,
        external_id TEXT NOT NULL,
        url TEXT,
        extra TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (incident_id, sink)
    );
    """,
    # 1 -> 2: lifecycle state per fingerprint, silences, and the sqlite sink's local tickets.
    """
    CREATE TABLE tracks (
        fingerprint TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        site TEXT,
        check_name TEXT,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE local_tickets (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        incident_id INTEGER NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        priority INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
        comments TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        resolved_at REAL
    );
    CREATE INDEX local_tickets_incident ON local_tickets (sink, incident_id);
    """,
    # 2 -> 3: PLACEHOLDER on branch wip-place, replaced by the fleet work's real migration 2
    # (incidents across agents) when the branches merge: it changes nothing.
    "",
    # 3 -> 4: the agents of a fleet (heartbeats) and the leases of `placement: one` checks
    # (agent/fleet/placement.py). ``token`` tells apart two processes with the same name.
    """
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        location TEXT,
        token TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    CREATE TABLE leases (
        site TEXT NOT NULL,
        check_name TEXT NOT NULL,
        holder TEXT NOT NULL,
        token TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (site, check_name)
    );
    CREATE INDEX leases_token ON leases (token);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class OutboxState(StrEnum):
    """Delivery state of an outbox entry."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


def ts(value: datetime) -> float:
    """A datetime as stored (Unix seconds)."""
    return value.timestamp()


def dt(value: float | None) -> datetime | None:
    """A stored time as an aware UTC datetime (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 (seconds, UTC, 'Z') for JSON output."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One incident as stored."""

    id: int
    fingerprint: str
    site: str
    check: str
    kind: FindingKind
    level: Level | None
    state: Phase
    flapping: bool
    silenced: str | None
    first_seen: datetime
    opened_at: datetime | None
    last_seen: datetime
    resolved_at: datetime | None
    occurrences: int
    summary: str
    rule: str
    reason: str
    evidence: Evidence
    suppressed: tuple[str, ...]
    causes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """A ticket a sink created for an incident."""

    incident_id: int
    sink: str
    external_id: str
    url: str | None
    extra: Mapping[str, str]
    state: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One ticket action waiting for (or done with) delivery."""

    id: int
    incident_id: int
    sink: str
    action: str
    event_kind: str | None
    text: str | None
    created_at: datetime
    next_at: datetime
    attempts: int
    state: OutboxState
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FleetAgent:
    """An agent of the fleet as its last heartbeat left it."""

    name: str
    location: str | None
    version: str
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseClaim:
    """The outcome of one attempt to take or renew the lease of a ``placement: one`` check."""

    won: bool
    """The caller holds the lease until ``expires_at`` and runs the check."""
    holder: str
    """Who holds the lease now (the caller when ``won``)."""
    expires_at: datetime
    renewed: bool = False
    """Won by the process that held it already (a renewal)."""
    taken_from: str | None = None
    """When won by taking over an expired lease of another process: that holder's name."""


@dataclass(frozen=True, slots=True)
class Silence:
    """A maintenance silence added with ``storewatch silence add``."""

    id: int
    site: str | None
    check: str | None
    reason: str
    created_at: datetime
    expires_at: datetime


def _evidence(data: dict[str, Any]) -> Evidence:
    return Evidence(url=data.get("url"), status=data.get("status"), excerpt=data.get("excerpt"),
                    timings=data.get("timings", {}), details=data.get("details", {}))


def _incident(row: sqlite3.Row) -> IncidentRecord:
    return IncidentRecord(
        id=row["id"], fingerprint=row["fingerprint"], site=row["site"], check=row["check_name"],
        kind=FindingKind(row["kind"]),
        level=Level(row["level"]) if row["level"] is not None else None,
        state=Phase(row["state"]), flapping=bool(row["flapping"]), silenced=row["silenced"],
        first_seen=dt(row["first_seen"]) or datetime.now(UTC),
        opened_at=dt(row["opened_at"]), last_seen=dt(row["last_seen"]) or datetime.now(UTC),
        resolved_at=dt(row["resolved_at"]), occurrences=row["occurrences"],
        summary=row["summary"], rule=row["rule"], reason=row["reason"],
        evidence=_evidence(json.loads(row["evidence"])),
        suppressed=tuple(json.loads(row["suppressed"])), causes=tuple(json.loads(row["causes"])))


def _ticket(row: sqlite3.Row) -> TicketRecord:
    return TicketRecord(row["incident_id"], row["sink"], row["external_id"], row["url"],
                        json.loads(row["extra"]), row["state"],
                        dt(row["created_at"]) or datetime.now(UTC))


def _entry(row: sqlite3.Row) -> OutboxEntry:
    return OutboxEntry(row["id"], row["incident_id"], row["sink"], row["action"],
                       row["event_kind"], row["text"],
                       dt(row["created_at"]) or datetime.now(UTC),
                       dt(row["next_at"]) or datetime.now(UTC), row["attempts"],
                       OutboxState(row["state"]), row["last_error"])


def track_to_json(track: Track) -> str:
    """Serialise a lifecycle state."""
    return json.dumps({
        "phase": track.phase.value, "level": int(track.level) if track.level else None,
        "fails": track.fails, "passes": track.passes, "sources": sorted(track.sources),
        "checks": sorted(track.checks),
        "changes": [ts(c) for c in track.changes], "flapping": track.flapping,
        "ticketed": track.ticketed,
        "opened_at": ts(track.opened_at) if track.opened_at else None,
        "last_reminder": ts(track.last_reminder) if track.last_reminder else None,
    })


def track_from_json(text: str) -> Track:
    """Deserialise a lifecycle state."""
    d = json.loads(text)
    return Track(phase=Phase(d["phase"]), level=Level(d["level"]) if d["level"] else None,
                 fails=d["fails"], passes=d["passes"], sources=frozenset(d["sources"]),
                 checks=frozenset(d.get("checks", ())),
                 changes=tuple(c for c in (dt(x) for x in d["changes"]) if c is not None),
                 flapping=d["flapping"], ticketed=d["ticketed"], opened_at=dt(d["opened_at"]),
                 last_reminder=dt(d["last_reminder"]))


def db_path(state_dir: Path) -> Path:
    """Where the store of ``state_dir`` lives."""
    return state_dir / DB_NAME


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


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migrations; return the version found before."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StateError(f"the incident store has schema version {found}, newer than this "
                         f"agent's {SCHEMA_VERSION}; upgrade storewatch")
    for version in range(found, SCHEMA_VERSION):
        with immediate(conn):
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current != version:  # another process migrated meanwhile
                continue
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return found


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def open_counts_of(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Open incidents by (site, level label: ``L1``…``L4``, ``none``)."""
    rows = conn.execute("SELECT site, level, COUNT(*) AS n FROM incidents WHERE state = 'open' "
                        "GROUP BY site, level")
    return {(r["site"], f"L{r['level']}" if r["level"] else "none"): r["n"] for r in rows}


def pending_stats_of(conn: sqlite3.Connection, now: datetime) -> tuple[int, float]:
    """Pending outbox entries and the age in seconds of the oldest one."""
    row = conn.execute("SELECT COUNT(*) AS n, MIN(created_at) AS t FROM outbox WHERE state = "
                       "'pending'").fetchone()
    age = max(0.0, ts(now) - row["t"]) if row["t"] is not None else 0.0
    return int(row["n"]), age


def dead_letters_of(conn: sqlite3.Connection) -> int:
    """Outbox entries given up as dead letters (kept until retried)."""
    return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()[0])


class Store:
    """The incident store of one state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {path.parent}: "
                             f"{exc.strerror or exc}") from None
        self.conn = connect(path)
        try:
            migrate(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise StateError(f"cannot migrate the incident store {path}: {exc}") from None

    @classmethod
    def open_existing(cls, state_dir: Path) -> Store:
        """The store of ``state_dir``; a StateError if the agent has not created one yet."""
        path = db_path(state_dir)
        if not path.is_file():
            raise StateError(f"no incident store at {path} (has `storewatch run` run with this "
                             "state directory?)")
        return cls(path)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        with immediate(self.conn):
            yield

    # -- lifecycle state -----------------------------------------------------------------------

    def track(self, fingerprint: str) -> Track:
        """The lifecycle state of ``fingerprint`` (a fresh one if never seen)."""
        row = self.conn.execute("SELECT state FROM tracks WHERE fingerprint = ?",
                                (fingerprint,)).fetchone()
        return track_from_json(row["state"]) if row else Track()

    def save_track(self, fingerprint: str, track: Track) -> None:
        """Store the lifecycle state of ``fingerprint``."""
        self.conn.execute("INSERT INTO tracks (fingerprint, state) VALUES (?, ?) ON CONFLICT "
                          "(fingerprint) DO UPDATE SET state = excluded.state",
                          (fingerprint, track_to_json(track)))

    def tracks_of_check(self, site: str, check: str) -> dict[str, Track]:
        """Lifecycle states of the site's active incidents that ``check`` failed in."""
        out: dict[str, Track] = {}
        for inc in self.active_incidents(site):
            track = self.track(inc.fingerprint)
            if check in track.checks:
                out[inc.fingerprint] = track
        return out

    # -- incidents -----------------------------------------------------------------------------

    def create_incident(self, *, fingerprint: str, site: str, check: str, kind: FindingKind,
                        level: Level | None, now: datetime, summary: str, rule: str,
                        reason: str, evidence: Evidence) -> int:
        """A new pending incident; returns its id."""
        cur = self.conn.execute(
            "INSERT INTO incidents (fingerprint, site, check_name, kind, level, state, "
            "first_seen, last_seen, occurrences, summary, rule, reason, evidence) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?, ?)",
            (fingerprint, site, check, kind.value, int(level) if level else None, ts(now),
             ts(now), summary, rule, reason, json.dumps(evidence.as_dict())))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_incident(self, incident_id: int, **fields: Any) -> None:
        """Set columns of an incident (datetimes, levels, lists converted)."""
        allowed = {"level", "state", "flapping", "silenced", "opened_at", "last_seen",
                   "resolved_at", "occurrences", "summary", "rule", "reason", "evidence",
                   "suppressed", "causes", "check_name"}
        sets, values = [], []
        for name, value in fields.items():
            if name not in allowed:
                raise ValueError(f"not an incident column: {name}")
            if isinstance(value, datetime):
                value = ts(value)
            elif isinstance(value, Evidence):
                value = json.dumps(value.as_dict())
            elif isinstance(value, tuple | list):
                value = json.dumps(list(value))
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, Level | bool):
                value = int(value)
            sets.append(f"{name} = ?")
            values.append(value)
        self.conn.execute(f"UPDATE incidents SET {', '.join(sets)} WHERE id = ?",
                          (*values, incident_id))

    def add_event(self, incident_id: int, at: datetime, type_: str, text: str) -> None:
        """Append to an incident's history."""
        self.conn.execute("INSERT INTO incident_events (incident_id, at, type, text) "
                          "VALUES (?, ?, ?, ?)", (incident_id, ts(at), type_, text))

    def incident(self, incident_id: int) -> IncidentRecord | None:
        """One incident by id."""
        row = self.conn.execute("SELECT * FROM incidents WHERE id = ?",
                                (incident_id,)).fetchone()
        return _incident(row) if row else None

    def active_incident(self, fingerprint: str) -> IncidentRecord | None:
        """The pending or open incident of ``fingerprint``, if any."""
        row = self.conn.execute("SELECT * FROM incidents WHERE fingerprint = ? AND state != "
                                "'resolved'", (fingerprint,)).fetchone()
        return _incident(row) if row else None

    def active_incidents(self, site: str | None = None) -> list[IncidentRecord]:
        """Pending and open incidents (of ``site``)."""
        sql = "SELECT * FROM incidents WHERE state != 'resolved'"
        args: tuple[Any, ...] = ()
        if site is not None:
            sql += " AND site = ?"
            args = (site,)
        return [_incident(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def incidents(self, *, open_only: bool = False, limit: int = 1000) -> list[IncidentRecord]:
        """Incidents, newest first (only open ones if ``open_only``)."""
        where = "WHERE state = 'open'" if open_only else ""
        rows = self.conn.execute(f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?",
                                 (limit,))
        return [_incident(r) for r in rows]

    def events(self, incident_id: int) -> list[tuple[datetime, str, str]]:
        """An incident's history: (at, type, text), oldest first."""
        rows = self.conn.execute("SELECT at, type, text FROM incident_events WHERE "
                                 "incident_id = ? ORDER BY id", (incident_id,))
        return [(dt(r["at"]) or datetime.now(UTC), r["type"], r["text"]) for r in rows]

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open incidents by (site, level label)."""
        return open_counts_of(self.conn)

    # -- outbox and tickets --------------------------------------------------------------------

    def enqueue(self, incident_id: int, sink: str, action: str, now: datetime,
                event_kind: str | None = None, text: str | None = None) -> None:
        """Add a ticket action to the outbox (call inside the incident change's transaction)."""
        self.conn.execute("INSERT INTO outbox (incident_id, sink, action, event_kind, text, "
                          "created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (incident_id, sink, action, event_kind, text, ts(now), ts(now)))

    def incident_sinks(self, incident_id: int) -> list[str]:
        """Sinks an open action was queued for (whether delivered yet or not)."""
        rows = self.conn.execute("SELECT DISTINCT sink FROM outbox WHERE incident_id = ? AND "
                                 "action = 'open' ORDER BY sink", (incident_id,))
        return [r["sink"] for r in rows]

    def due(self, now: datetime, limit: int = 100, sink: str | None = None) -> list[OutboxEntry]:
        """Pending entries that are due and first in line for their (incident, sink), of one
        ``sink`` if given; L1 incidents first, then by due time."""
        where = "" if sink is None else " AND o.sink = ?"
        args: tuple[str, ...] = () if sink is None else (sink,)
        rows = self.conn.execute(
            "SELECT o.* FROM outbox o LEFT JOIN incidents i ON i.id = o.incident_id "
            "WHERE o.state = 'pending' AND o.next_at <= ?" + where + " AND o.id = "
            "(SELECT MIN(id) FROM outbox p WHERE p.incident_id = o.incident_id AND "
            "p.sink = o.sink AND p.state = 'pending') "
            "ORDER BY COALESCE(i.level, 9) != 1, o.next_at, o.id LIMIT ?",
            (ts(now), *args, limit))
        return [_entry(r) for r in rows]

    def next_due(self, sink: str | None = None) -> datetime | None:
        """When the earliest pending entry (of ``sink``) is due."""
        if sink is None:
            row = self.conn.execute("SELECT MIN(next_at) AS t FROM outbox WHERE state = "
                                    "'pending'").fetchone()
        else:
            row = self.conn.execute("SELECT MIN(next_at) AS t FROM outbox WHERE state = "
                                    "'pending' AND sink = ?", (sink,)).fetchone()
        return dt(row["t"])

    def pending_sinks(self) -> set[str]:
        """Names of the sinks that have pending entries."""
        rows = self.conn.execute("SELECT DISTINCT sink FROM outbox WHERE state = 'pending'")
        return {r["sink"] for r in rows}

    def outbox(self, state: OutboxState | None = None) -> list[OutboxEntry]:
        """Outbox entries (in one state), oldest first."""
        if state is None:
            rows = self.conn.execute("SELECT * FROM outbox ORDER BY id")
        else:
            rows = self.conn.execute("SELECT * FROM outbox WHERE state = ? ORDER BY id",
                                     (state.value,))
        return [_entry(r) for r in rows]

    def pending_stats(self, now: datetime) -> tuple[int, float]:
        """Pending entries and the age in seconds of the oldest one."""
        return pending_stats_of(self.conn, now)

    def ticket(self, incident_id: int, sink: str) -> TicketRecord | None:
        """The ticket ``sink`` created for an incident."""
        row = self.conn.execute("SELECT * FROM tickets WHERE incident_id = ? AND sink = ?",
                                (incident_id, sink)).fetchone()
        return _ticket(row) if row else None

    def tickets(self, incident_id: int | None = None) -> list[TicketRecord]:
        """Tickets (of one incident), oldest first."""
        if incident_id is None:
            rows = self.conn.execute("SELECT * FROM tickets ORDER BY created_at, incident_id")
        else:
            rows = self.conn.execute("SELECT * FROM tickets WHERE incident_id = ? ORDER BY "
                                     "sink", (incident_id,))
        return [_ticket(r) for r in rows]

    def record_ticket(self, entry_id: int, incident_id: int, sink: str, external_id: str,
                      url: str | None, extra: Mapping[str, str], now: datetime) -> None:
        """Store a created (or found) ticket and mark its open entry delivered, atomically."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO tickets (incident_id, sink, external_id, url, extra, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, sink) "
                "DO NOTHING", (incident_id, sink, external_id, url, json.dumps(dict(extra)),
                               ts(now), ts(now)))
            self._finish(entry_id, OutboxState.DELIVERED, None, now)

    def mark_delivered(self, entry: OutboxEntry, now: datetime) -> None:
        """An update/resolve went through (a resolve also closes the ticket record)."""
        with self.transaction():
            if entry.action == "resolve":
                self.conn.execute("UPDATE tickets SET state = 'resolved', updated_at = ? WHERE "
                                  "incident_id = ? AND sink = ?",
                                  (ts(now), entry.incident_id, entry.sink))
            self._finish(entry.id, OutboxState.DELIVERED, None, now)

    def mark_retry(self, entry_id: int, next_at: datetime, error: str) -> None:
        """A retryable failure: try again at ``next_at``."""
        with self.transaction():
            self.conn.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, "
                              "last_error = ? WHERE id = ?", (ts(next_at), error, entry_id))

    def mark_dead(self, entry_id: int, error: str, now: datetime) -> None:
        """A permanent failure: a dead letter, kept for ``tickets list``."""
        with self.transaction():
            self.conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?",
                              (entry_id,))
            self._finish(entry_id, OutboxState.DEAD, error, now)

    def retry_dead(self, now: datetime, entry_ids: Sequence[int] = ()) -> int:
        """Queue dead letters (those of ``entry_ids``, else all) for delivery again; returns how
        many. Their order is kept, so a retried open goes before its retried resolve."""
        sql = ("UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, done_at = NULL "
               "WHERE state = 'dead'")
        args: list[Any] = [ts(now)]
        if entry_ids:
            sql += f" AND id IN ({', '.join('?' * len(entry_ids))})"
            args += list(entry_ids)
        with self.transaction():
            return self.conn.execute(sql, args).rowcount

    def _finish(self, entry_id: int, state: OutboxState, error: str | None,
                now: datetime) -> None:
        self.conn.execute("UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error), "
                          "done_at = ? WHERE id = ?", (state.value, error, ts(now), entry_id))

    # -- silences ------------------------------------------------------------------------------

    def add_silence(self, site: str | None, check: str | None, reason: str, now: datetime,
                    duration: timedelta) -> int:
        """A silence from now for ``duration``; returns its id."""
        with self.transaction():
            cur = self.conn.execute("INSERT INTO silences (site, check_name, reason, created_at, "
                                    "expires_at) VALUES (?, ?, ?, ?, ?)",
                                    (site, check, reason, ts(now), ts(now + duration)))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def silences(self, now: datetime) -> list[Silence]:
        """Silences that have not expired."""
        rows = self.conn.execute("SELECT * FROM silences WHERE expires_at > ? ORDER BY id",
                                 (ts(now),))
        return [Silence(r["id"], r["site"], r["check_name"], r["reason"],
                        dt(r["created_at"]) or now, dt(r["expires_at"]) or now) for r in rows]

    def remove_silence(self, silence_id: int) -> bool:
        """Delete a silence; False if there was none with that id."""
        with self.transaction():
            cur = self.conn.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return cur.rowcount > 0

    # -- fleet: agents and leases (agent/fleet/placement.py) -----------------------------------

    def heartbeat(self, name: str, location: str | None, token: str, version: str,
                  started_at: datetime, now: datetime) -> None:
        """Record that agent ``name`` (process ``token``) is alive at ``now``."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO agents (name, location, token, version, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "location = excluded.location, token = excluded.token, "
                "version = excluded.version, started_at = excluded.started_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (name, location, token, version, ts(started_at), ts(now)))

    def fleet_agents(self, seen_since: datetime) -> list[FleetAgent]:
        """Agents that sent a heartbeat since ``seen_since``, by name."""
        rows = self.conn.execute("SELECT * FROM agents WHERE heartbeat_at >= ? ORDER BY name",
                                 (ts(seen_since),))
        return [FleetAgent(r["name"], r["location"], r["version"],
                           dt(r["started_at"]) or seen_since, dt(r["heartbeat_at"]) or seen_since)
                for r in rows]

    def forget_agents(self, silent_since: datetime) -> int:
        """Delete agents without a heartbeat since ``silent_since``; returns how many."""
        with self.transaction():
            return self.conn.execute("DELETE FROM agents WHERE heartbeat_at < ?",
                                     (ts(silent_since),)).rowcount

    def claim_lease(self, site: str, check: str, holder: str, token: str, now: datetime,
                    expires_at: datetime) -> LeaseClaim:
        """Take or renew the lease of ``site``/``check`` for process ``token`` until
        ``expires_at``: a compare-and-set that wins when there is no lease yet, when ``token``
        holds it already, or when it expired before ``now``; the row count says who won."""
        with self.transaction():
            before = self.conn.execute("SELECT holder, token, expires_at FROM leases WHERE "
                                       "site = ? AND check_name = ?", (site, check)).fetchone()
            won = self.conn.execute(
                "INSERT INTO leases (site, check_name, holder, token, acquired_at, renewed_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, check_name) "
                "DO UPDATE SET holder = excluded.holder, token = excluded.token, "
                "acquired_at = CASE WHEN leases.token = excluded.token "
                "THEN leases.acquired_at ELSE excluded.acquired_at END, "
                "renewed_at = excluded.renewed_at, expires_at = excluded.expires_at "
                "WHERE leases.token = excluded.token OR leases.expires_at < excluded.renewed_at",
                (site, check, holder, token, ts(now), ts(now), ts(expires_at))).rowcount == 1
        mine = before is not None and before["token"] == token
        if won:
            taken_from = None if mine or before is None else str(before["holder"])
            return LeaseClaim(True, holder, expires_at, mine, taken_from)
        assert before is not None  # a lost claim means another process's live lease was there
        return LeaseClaim(False, str(before["holder"]), dt(before["expires_at"]) or now)

    def release_leases(self, token: str, keys: Sequence[tuple[str, str]] | None = None) -> int:
        """Give up the leases process ``token`` holds (all, or those of the ``(site, check)``
        ``keys``): the others take over at their next run; returns how many."""
        with self.transaction():
            if keys is None:
                return self.conn.execute("DELETE FROM leases WHERE token = ?", (token,)).rowcount
            return sum(self.conn.execute("DELETE FROM leases WHERE token = ? AND site = ? AND "
                                         "check_name = ?", (token, site, check)).rowcount
                       for site, check in keys)

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` says ok."""
        return bool(self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

