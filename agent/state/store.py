"""The incident store: SQLite (WAL) at ``<state_dir>/storewatch.db``, or PostgreSQL.

Holds incidents and their event history, the lifecycle state of every fingerprint, the ticket
outbox, the tickets sinks created, silences, and the built-in sqlite sink's local tickets.

* One schema on both backends (agent/state/database.py: the portable SQL rules):
  ``MIGRATIONS[i]`` takes the database from version i to i+1; opening a store applies the
  missing ones under a lock (SQLite ``user_version``; PostgreSQL ``schema_version``).
* ``self.conn`` is the backend's ``Database``: ``self.conn.execute(sql, args)`` with ``?``
  placeholders runs unchanged on SQLite (agent/state/sqlite.py) and PostgreSQL
  (agent/state/postgres.py).
* Every write that belongs together (an incident's change, its history and its outbox entries)
  happens in one transaction (``Store.transaction``) that serialises writers across processes,
  so a ``kill -9`` leaves either all of it or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.errors import StateError
from agent.state.database import DB_NAME as DB_NAME
from agent.state.database import Database, Row, is_driver_error, open_database
from agent.state.database import db_path as db_path
from classifier import Evidence, FindingKind, Level, Phase, Track

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
    # 2 -> 3: a fleet of agents on one store: lifecycle state per (fingerprint, location), the
    # locations that saw an incident, incidents confirmed from too few locations, and claims
    # on outbox entries (the agent delivering an entry, until when).
    """
    CREATE TABLE location_tracks (
        fingerprint TEXT NOT NULL,
        location TEXT NOT NULL,
        site TEXT NOT NULL,
        phase TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (fingerprint, location)
    );
    CREATE INDEX location_tracks_active ON location_tracks (site, location)
        WHERE phase != 'resolved';
    ALTER TABLE incidents ADD COLUMN locations TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE incidents ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until REAL;
    """,
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


_FIRST_IN_LINE = ("(SELECT MIN(id) FROM outbox p WHERE p.incident_id = o.incident_id AND "
                  "p.sink = o.sink AND p.state = 'pending')")
"""The id of the entry an (incident, sink) delivers next: actions go out in queued order."""


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
    locations: Mapping[str, str] = field(default_factory=dict)
    """Fleet: each location that ran the incident's checks during it: ``seen`` (it saw the
    failure) or ``not`` (its runs passed)."""
    unconfirmed: bool = False
    """Confirmed from fewer locations than ``incidents.min_locations``: no ticket yet."""

    @property
    def status(self) -> str:
        """The state as users see it: ``unconfirmed`` for a pending incident some location
        confirmed (too few of them), else the phase."""
        if self.state is Phase.PENDING and self.unconfirmed:
            return UNCONFIRMED
        return self.state.value

    @property
    def seen_from(self) -> tuple[str, ...]:
        """Locations that saw the failure, sorted."""
        return tuple(sorted(k for k, v in self.locations.items() if v == SEEN))

    @property
    def not_from(self) -> tuple[str, ...]:
        """Locations whose runs passed during the incident, sorted."""
        return tuple(sorted(k for k, v in self.locations.items() if v != SEEN))


UNCONFIRMED = "unconfirmed"
SEEN = "seen"
NOT_SEEN = "not"


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
    claimed_by: str | None = None
    claim_until: datetime | None = None


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


def _incident(row: Row) -> IncidentRecord:
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
        suppressed=tuple(json.loads(row["suppressed"])), causes=tuple(json.loads(row["causes"])),
        locations=json.loads(row["locations"]), unconfirmed=bool(row["unconfirmed"]))


def _ticket(row: Row) -> TicketRecord:
    return TicketRecord(row["incident_id"], row["sink"], row["external_id"], row["url"],
                        json.loads(row["extra"]), row["state"],
                        dt(row["created_at"]) or datetime.now(UTC))


def _entry(row: Row) -> OutboxEntry:
    return OutboxEntry(row["id"], row["incident_id"], row["sink"], row["action"],
                       row["event_kind"], row["text"],
                       dt(row["created_at"]) or datetime.now(UTC),
                       dt(row["next_at"]) or datetime.now(UTC), row["attempts"],
                       OutboxState(row["state"]), row["last_error"], row["claimed_by"],
                       dt(row["claim_until"]))


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


def open_counts_of(conn: Database) -> dict[tuple[str, str], int]:
    """Open incidents by (site, level label: ``L1``…``L4``, ``none``)."""
    rows = conn.execute("SELECT site, level, COUNT(*) AS n FROM incidents WHERE state = 'open' "
                        "GROUP BY site, level")
    return {(r["site"], f"L{r['level']}" if r["level"] else "none"): r["n"] for r in rows}


def unconfirmed_counts_of(conn: Database) -> dict[tuple[str, str], int]:
    """Fleet: unconfirmed incidents (confirmed from too few locations) by (site, level label)."""
    rows = conn.execute("SELECT site, level, COUNT(*) AS n FROM incidents WHERE state = "
                        "'pending' AND unconfirmed = 1 GROUP BY site, level")
    return {(r["site"], f"L{r['level']}" if r["level"] else "none"): r["n"] for r in rows}


def pending_stats_of(conn: Database, now: datetime) -> tuple[int, float]:
    """Pending outbox entries and the age in seconds of the oldest one."""
    row = conn.execute("SELECT COUNT(*) AS n, MIN(created_at) AS t FROM outbox WHERE state = "
                       "'pending'").fetchone()
    age = max(0.0, ts(now) - row["t"]) if row["t"] is not None else 0.0
    return int(row["n"]), age


def dead_letters_of(conn: Database) -> int:
    """Outbox entries given up as dead letters (kept until retried)."""
    return int(conn.execute("SELECT COUNT(*) AS n FROM outbox WHERE state = 'dead'")
               .fetchone()["n"])


class Store:
    """The incident store, on SQLite or PostgreSQL."""

    def __init__(self, location: str | Path) -> None:
        """Open (and migrate) the store at ``location``: a SQLite file path or a
        ``postgresql://`` URL; a StateError when it cannot be used."""
        self.conn: Database = open_database(location)
        self.where = self.conn.where
        try:
            migrate(self.conn)
        except StateError:
            self.conn.close()
            raise
        except Exception as exc:
            self.conn.close()
            from agent.state.health import is_state_error

            if not is_state_error(exc) and not is_driver_error(exc):
                raise
            raise StateError(f"cannot migrate the incident store {self.where}: "
                             f"{_one_line(exc)}") from None

    @classmethod
    def open_existing(cls, location: str | Path) -> Store:
        """The store at ``location`` (a state directory: a path without a file suffix; a SQLite
        file; or a PostgreSQL URL); a StateError if a SQLite store was not created there yet."""
        if not isinstance(location, str) or "://" not in location:
            path = Path(location)
            if path.is_dir() or not path.suffix:  # a state directory
                path = db_path(path)
            if not path.is_file():
                raise StateError(f"no incident store at {path} (has `storewatch run` run with "
                                 "this state directory?)")
            location = path
        return cls(location)

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.conn.kind

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all; writers are serialised across
        processes (SQLite ``BEGIN IMMEDIATE``, PostgreSQL one advisory lock)."""
        with self.conn.transaction():
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

    def location_tracks(self, fingerprint: str, since: datetime,
                        own: str) -> dict[str, Track]:
        """Fleet: the lifecycle state of ``fingerprint`` per location: ``own``'s, and those of
        the other locations whose latest run is not older than ``since``."""
        rows = self.conn.execute("SELECT location, state FROM location_tracks WHERE "
                                 "fingerprint = ? AND (updated_at >= ? OR location = ?)",
                                 (fingerprint, ts(since), own))
        return {r["location"]: track_from_json(r["state"]) for r in rows}

    def save_location_track(self, fingerprint: str, location: str, site: str, track: Track,
                            now: datetime) -> None:
        """Store the lifecycle state of ``fingerprint`` as seen from ``location``."""
        self.conn.execute("INSERT INTO location_tracks (fingerprint, location, site, phase, "
                          "state, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                          "(fingerprint, location) DO UPDATE SET phase = excluded.phase, "
                          "state = excluded.state, updated_at = excluded.updated_at",
                          (fingerprint, location, site, track.phase.value,
                           track_to_json(track), ts(now)))

    def has_location_tracks(self, fingerprint: str) -> bool:
        """Whether any location ever recorded a state for ``fingerprint``."""
        return self.conn.execute("SELECT 1 FROM location_tracks WHERE fingerprint = ? LIMIT 1",
                                 (fingerprint,)).fetchone() is not None

    def failing_at(self, site: str, location: str, check: str) -> set[str]:
        """Fleet: fingerprints of ``site`` that ``check`` is failing (or recovering) in as seen
        from ``location``, with or without an active incident."""
        rows = self.conn.execute("SELECT fingerprint, state FROM location_tracks WHERE "
                                 "site = ? AND location = ? AND phase != 'resolved'",
                                 (site, location))
        return {r["fingerprint"] for r in rows if check in track_from_json(r["state"]).checks}

    def forget_locations(self, fingerprint: str) -> None:
        """Drop every location's state of ``fingerprint`` (a manual resolve starts afresh)."""
        self.conn.execute("DELETE FROM location_tracks WHERE fingerprint = ?", (fingerprint,))

    # -- incidents -----------------------------------------------------------------------------

    def create_incident(self, *, fingerprint: str, site: str, check: str, kind: FindingKind,
                        level: Level | None, now: datetime, summary: str, rule: str,
                        reason: str, evidence: Evidence) -> int:
        """A new pending incident; returns its id."""
        row = self.conn.execute(
            "INSERT INTO incidents (fingerprint, site, check_name, kind, level, state, "
            "first_seen, last_seen, occurrences, summary, rule, reason, evidence) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?, ?) RETURNING id",
            (fingerprint, site, check, kind.value, int(level) if level else None, ts(now),
             ts(now), summary, rule, reason, json.dumps(evidence.as_dict()))).fetchone()
        return int(row["id"])

    def update_incident(self, incident_id: int, **fields: Any) -> None:
        """Set columns of an incident (datetimes, levels, lists converted)."""
        allowed = {"level", "state", "flapping", "silenced", "opened_at", "last_seen",
                   "resolved_at", "occurrences", "summary", "rule", "reason", "evidence",
                   "suppressed", "causes", "check_name", "locations", "unconfirmed"}
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
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
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

    def evidence_in_use(self, resolved_since: datetime) -> tuple[list[Evidence], list[Evidence]]:
        """Evidence of (pending and open incidents, incidents resolved since the cut-off): what
        evidence-file pruning must keep."""
        active: list[Evidence] = []
        recent: list[Evidence] = []
        rows = self.conn.execute("SELECT state, evidence FROM incidents WHERE state != "
                                 "'resolved' OR resolved_at >= ?", (ts(resolved_since),))
        for row in rows:
            (recent if row["state"] == "resolved" else active).append(
                _evidence(json.loads(row["evidence"])))
        return active, recent

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

    def due(self, now: datetime, limit: int = 100, sink: str | None = None,
            claimer: str = "") -> list[OutboxEntry]:
        """Pending entries that are due, first in line for their (incident, sink) and not
        under another ``claimer``'s live claim, of one ``sink`` if given; L1 incidents first,
        then by due time."""
        where = "" if sink is None else " AND o.sink = ?"
        args: tuple[str, ...] = () if sink is None else (sink,)
        rows = self.conn.execute(
            "SELECT o.* FROM outbox o LEFT JOIN incidents i ON i.id = o.incident_id "
            "WHERE o.state = 'pending' AND o.next_at <= ?" + where + " AND "
            "(o.claimed_by IS NULL OR o.claim_until < ? OR o.claimed_by = ?) AND o.id = "
            + _FIRST_IN_LINE + " ORDER BY COALESCE(i.level, 9) != 1, o.next_at, o.id LIMIT ?",
            (ts(now), *args, ts(now), claimer, limit))
        return [_entry(r) for r in rows]

    def next_due(self, sink: str | None = None) -> datetime | None:
        """When the earliest pending entry (of ``sink``) that is first in line for its
        (incident, sink) is due, or its claim runs out if that is later."""
        where = "" if sink is None else " AND o.sink = ?"
        args: tuple[str, ...] = () if sink is None else (sink,)
        row = self.conn.execute(
            "SELECT MIN(CASE WHEN o.claim_until IS NOT NULL AND o.claim_until > o.next_at "
            "THEN o.claim_until ELSE o.next_at END) AS t FROM outbox o WHERE "
            "o.state = 'pending'" + where + " AND o.id = " + _FIRST_IN_LINE, args).fetchone()
        return dt(row["t"])

    def claim(self, entry_id: int, claimer: str, now: datetime, lease: timedelta) -> bool:
        """Fleet: take the delivery of a pending entry for ``lease`` (compare-and-set: only if
        nobody else holds a live claim on it; ``claimer``'s own claim is renewed, e.g. one left
        by an attempt the store could not record); True if it is now ``claimer``'s."""
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id = ? AND "
                "state = 'pending' AND (claimed_by IS NULL OR claim_until < ? OR "
                "claimed_by = ?)", (claimer, ts(now + lease), entry_id, ts(now), claimer))
            return cur.rowcount == 1

    def release_claims(self, agent: str, keep: str) -> int:
        """Release the claims of earlier processes of ``agent`` (claimants ``agent/<pid>``
        other than ``keep``): a restarted agent takes its dead predecessor's entries back at
        once instead of waiting out their lease. Returns how many."""
        prefix = agent + "/"
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE state = "
                "'pending' AND substr(claimed_by, 1, ?) = ? AND claimed_by != ?",
                (len(prefix), prefix, keep))
            return cur.rowcount

    def claimant(self, entry_id: int) -> str | None:
        """Who holds the claim on an entry (None: nobody)."""
        row = self.conn.execute("SELECT claimed_by FROM outbox WHERE id = ?",
                                (entry_id,)).fetchone()
        return row["claimed_by"] if row else None

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
                              "last_error = ?, claimed_by = NULL, claim_until = NULL "
                              "WHERE id = ?", (ts(next_at), error, entry_id))

    def mark_dead(self, entry_id: int, error: str, now: datetime) -> None:
        """A permanent failure: a dead letter, kept for ``tickets list``."""
        with self.transaction():
            self.conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?",
                              (entry_id,))
            self._finish(entry_id, OutboxState.DEAD, error, now)

    def retry_dead(self, now: datetime, entry_ids: Sequence[int] = ()) -> int:
        """Queue dead letters (those of ``entry_ids``, else all) for delivery again; returns how
        many. Their order is kept, so a retried open goes before its retried resolve."""
        sql = ("UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, done_at = NULL, "
               "claimed_by = NULL, claim_until = NULL WHERE state = 'dead'")
        args: list[Any] = [ts(now)]
        if entry_ids:
            sql += f" AND id IN ({', '.join('?' * len(entry_ids))})"
            args += list(entry_ids)
        with self.transaction():
            return self.conn.execute(sql, args).rowcount

    def _finish(self, entry_id: int, state: OutboxState, error: str | None,
                now: datetime) -> None:
        self.conn.execute("UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error), "
                          "done_at = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                          (state.value, error, ts(now), entry_id))

    # -- silences ------------------------------------------------------------------------------

    def add_silence(self, site: str | None, check: str | None, reason: str, now: datetime,
                    duration: timedelta) -> int:
        """A silence from now for ``duration``; returns its id."""
        with self.transaction():
            row = self.conn.execute("INSERT INTO silences (site, check_name, reason, created_at, "
                                    "expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                                    (site, check, reason, ts(now), ts(now + duration))
                                    ).fetchone()
        return int(row["id"])

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
                  started_at: datetime, now: datetime) -> str | None:
        """Record that agent ``name`` (process ``token``) is alive at ``now``; returns the
        token of the process whose heartbeat this one replaces (None: there was none)."""
        with self.transaction():
            row = self.conn.execute("SELECT token FROM agents WHERE name = ?",
                                    (name,)).fetchone()
            self.conn.execute(
                "INSERT INTO agents (name, location, token, version, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "location = excluded.location, token = excluded.token, "
                "version = excluded.version, started_at = excluded.started_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (name, location, token, version, ts(started_at), ts(now)))
        return row["token"] if row is not None else None

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
        """The backend's consistency check passes (SQLite ``PRAGMA integrity_check``;
        PostgreSQL checks its own pages, so: the server answers and the schema is there)."""
        return self.conn.integrity_ok()


def migrate(conn: Database) -> int:
    """Apply the missing ``MIGRATIONS`` on either backend; return the version found before."""
    return conn.migrate(MIGRATIONS)


def _one_line(exc: BaseException) -> str:
    from agent.config.secrets import scrub

    return scrub(" ".join(str(exc).split()))

