"""The built-in default sink: a local ticket list in the incident store (``local_tickets``).

It behaves like a tracker: tickets carry the incident's fingerprint, so ``find`` can return the
ticket a crash left unrecorded, and comments and resolution are appended to the ticket. Its
SQLite calls run in a worker thread (one at a time), so a store locked by another process
delays the local ticket, never the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from typing import Literal

from agent.sinks.base import IncidentView, SinkBuildContext, TicketEvent, TicketRef
from agent.sinks.config import SinkModel
from agent.sinks.render import resolution_text
from agent.state.sqlite import SqliteDatabase, immediate
from agent.state.store import MIGRATIONS, db_path, ts


class SqliteSinkConfig(SinkModel):
    """``type: sqlite`` — no settings: tickets go to the agent's own store."""

    type: Literal["sqlite"] = "sqlite"


class SqliteSink:
    """Tickets as rows of ``local_tickets`` in ``<state_dir>/storewatch.db`` (always this local
    SQLite file, also when the incident store is on PostgreSQL)."""

    def __init__(self, name: str, context: SinkBuildContext) -> None:
        self.name = name
        db = SqliteDatabase(db_path(context.state_dir))
        try:
            db.migrate(MIGRATIONS)  # a no-op when the incident store is this file
        except BaseException:
            db.close()
            raise
        self._conn = db.conn
        self._lock = threading.Lock()  # an attempt past its deadline may still be running

    def close(self) -> None:
        """Close the sink's connection."""
        with self._lock:
            self._conn.close()

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The local ticket of this incident, if one was created."""
        return await asyncio.to_thread(self._find, incident)

    async def open(self, incident: IncidentView) -> TicketRef:
        """Create the local ticket."""
        return await asyncio.to_thread(self._open, incident)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Append a comment (and the current priority)."""
        await asyncio.to_thread(self._comment, ref, f"[{event.kind.value}] {event.text}",
                                event.at, incident.priority)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Mark the ticket resolved with the recovery time and duration."""
        at = incident.resolved_at or datetime.now(UTC)
        await asyncio.to_thread(self._comment, ref, resolution_text(incident), at,
                                incident.priority, resolve=True)

    def _find(self, incident: IncidentView) -> TicketRef | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM local_tickets WHERE sink = ? AND "
                                     "incident_id = ? AND fingerprint = ?",
                                     (self.name, incident.id, incident.fingerprint)).fetchone()
        return TicketRef(self.name, f"LOCAL-{row['id']}") if row else None

    def _open(self, incident: IncidentView) -> TicketRef:
        with self._lock, immediate(self._conn):
            cur = self._conn.execute(
                "INSERT INTO local_tickets (sink, fingerprint, incident_id, title, body, priority, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.name, incident.fingerprint, incident.id, incident.title, incident.body,
                 incident.priority, ts(datetime.now(UTC))))
        return TicketRef(self.name, f"LOCAL-{cur.lastrowid}")

    def _comment(self, ref: TicketRef, text: str, at: datetime, priority: int, *,
                 resolve: bool = False) -> None:
        ticket_id = int(ref.external_id.removeprefix("LOCAL-"))
        with self._lock, immediate(self._conn):
            row = self._conn.execute("SELECT comments FROM local_tickets WHERE id = ?",
                                     (ticket_id,)).fetchone()
            comments = json.loads(row["comments"]) if row else []
            comments.append({"at": at.isoformat(), "text": text})
            self._conn.execute(
                "UPDATE local_tickets SET comments = ?, priority = ?, state = CASE WHEN ? THEN "
                "'resolved' ELSE state END, resolved_at = CASE WHEN ? THEN ? ELSE resolved_at "
                "END WHERE id = ?", (json.dumps(comments), priority, resolve, resolve, ts(at),
                                     ticket_id))


def build(config: SqliteSinkConfig, context: SinkBuildContext) -> SqliteSink:
    """Factory registered as ``sqlite``."""
    return SqliteSink(context.name, context)


CONFIG = SqliteSinkConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
