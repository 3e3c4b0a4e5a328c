"""Re-sending open incidents to sinks whose alerts expire unless repeated (Alertmanager).

A sink that implements ``PeriodicResend`` (``agent/sinks/base.py``) gets an ``update`` with a
``REMINDER`` event for every open incident it holds a ticket for, once per its
``resend_interval``. Sinks without that attribute (Jira, Zendesk, ...) are never re-sent to, so a
ticket does not get a comment per interval. Re-sends go straight to the sink, not through the
outbox: they carry no news, are idempotent, and a missed one is repeated on the next pass.

The outbox still owns the incident's ``open`` (a re-send waits until the ticket is recorded) and
its ``resolve``; if an incident is resolved while a re-send is in flight, the resolve is sent
again after it so the re-sent firing alert cannot outlive the incident. Its store reads go
through the outbox's store thread (``Outbox.query``), like every other store call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from agent.errors import SinkError, StateError
from agent.sinks.base import EventKind, PeriodicResend, TicketEvent, TicketRef, TicketSink
from agent.sinks.outbox import Outbox
from agent.sinks.render import incident_view
from agent.state.health import is_state_error
from agent.state.store import IncidentRecord
from classifier.lifecycle import Phase

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 15.0
"""How often a resender with no re-sending sink looks again (a reload may add one)."""


def resending_sinks(sinks: dict[str, TicketSink]) -> dict[str, PeriodicResend]:
    """The sinks whose alerts expire unless re-sent, by name."""
    return {name: sink for name, sink in sinks.items() if isinstance(sink, PeriodicResend)}


class Resender:
    """Keeps the alerts of open incidents alive in ``PeriodicResend`` sinks."""

    def __init__(self, outbox: Callable[[], Outbox],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        """Returns the outbox of the open store (raises ``StateError`` while there is none)."""
        self._clock = clock
        self._sent: dict[tuple[int, str], float] = {}
        self._failing: set[tuple[int, str]] = set()

    def poll_seconds(self) -> float:
        """How long to wait between passes: a quarter of the shortest resend interval."""
        try:
            sinks = resending_sinks(self._outbox().sinks)
        except StateError:
            return IDLE_POLL_SECONDS
        if not sinks:
            return IDLE_POLL_SECONDS
        shortest = min(float(s.resend_interval) for s in sinks.values())
        return min(IDLE_POLL_SECONDS, max(0.25, shortest / 4))

    async def resend_due(self) -> int:
        """Re-send every open incident whose interval has passed; returns how many were sent."""
        outbox = self._outbox()
        sinks = resending_sinks(outbox.sinks)
        open_incidents = [r for r in await outbox.query(outbox.store.active_incidents)
                          if r.state is Phase.OPEN]
        alive = {(r.id, name) for r in open_incidents for name in sinks}
        self._sent = {k: v for k, v in self._sent.items() if k in alive}
        self._failing &= alive
        sent = 0
        for record in open_incidents:
            for name, sink in sinks.items():
                last = self._sent.get((record.id, name))
                if last is not None and self._clock() - last < float(sink.resend_interval):
                    continue
                if await self._resend(outbox, record, name):
                    sent += 1
        return sent

    async def _resend(self, outbox: Outbox, record: IncidentRecord, name: str) -> bool:
        ticket = await outbox.query(outbox.store.ticket, record.id, name)
        sink = outbox.sinks.get(name)
        if ticket is None or ticket.state != "open" or sink is None:
            return False  # its open is not delivered yet (the outbox sends it), or it is over
        key = (record.id, name)
        ref = TicketRef(name, ticket.external_id, ticket.url, ticket.extra)
        event = TicketEvent(EventKind.REMINDER, "still open", datetime.now(UTC))
        try:
            await sink.update(ref, incident_view(record, outbox.site_info(record.site)), event)
            now = await outbox.query(outbox.store.incident, record.id)
            if now is not None and now.state is not Phase.OPEN:  # resolved meanwhile
                await sink.resolve(ref, incident_view(now, outbox.site_info(now.site)))
        except SinkError as exc:
            interval = float(getattr(sink, "resend_interval", IDLE_POLL_SECONDS))
            self._sent[key] = self._clock() - interval / 2  # try again in half an interval
            if key not in self._failing:
                self._failing.add(key)
                log.warning("re-sending incident #%d to %s failed (will retry): %s",
                            record.id, name, exc)
            return False
        if key in self._failing:
            self._failing.discard(key)
            log.info("re-sending incident #%d to %s works again", record.id, name)
        self._sent[key] = self._clock()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Re-send until ``stop`` is set; a failing pass (store, sink bug) is tried again."""
        while not stop.is_set():
            try:
                await self.resend_due()
            except Exception as exc:
                if not is_state_error(exc):  # StateHealth reports store trouble already
                    log.exception("re-sending open incidents failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds())
