"""Delivery of the outbox: every ticket action reaches its sink once, in order, or is a dead letter.

* Entries of one (incident, sink) are delivered in the order they were queued; an ``open`` is
  therefore always done before the updates and the resolve of the same ticket.
* ``open`` asks the sink first (``sink.find``) whether a ticket with the incident's fingerprint
  already exists, so a crash between "created in the tracker" and "recorded here" cannot create
  a second ticket; the found or created ticket is recorded together with marking the entry
  delivered, in one transaction.
* Retryable failures wait ``base * 2**attempts`` (capped, with jitter), at least the tracker's
  ``Retry-After``; permanent failures make the entry a dead letter, logged once on one line.
  Nothing is removed: delivered and dead entries stay for ``storewatch tickets list``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError, StateError
from agent.sinks.base import EventKind, TicketEvent, TicketRef, TicketSink
from agent.sinks.render import SiteInfo, incident_view
from agent.state_health import StateHealth, is_state_error
from agent.store import OutboxEntry, Store

log = logging.getLogger(__name__)

STATE_RETRY_SECONDS = 30.0
"""While the store cannot be written, how often a delivery pass is tried anyway."""

DeliveryHook = Callable[[str, str, str], None]
"""Called with (sink, action, outcome) after each attempt; outcome: delivered, retry, dead."""


class Outbox:
    """Delivers due outbox entries to their sinks."""

    def __init__(self, store: Store, sinks: Mapping[str, TicketSink],
                 site_info: Callable[[str], SiteInfo], *, base_delay: float = 2.0,
                 max_delay: float = 600.0, rng: random.Random | None = None,
                 on_attempt: DeliveryHook | None = None,
                 health: StateHealth | None = None) -> None:
        self.store = store
        self.health = health
        self.sinks = dict(sinks)
        self.site_info = site_info
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = rng or random.Random()
        self._on_attempt = on_attempt
        self.wake = asyncio.Event()

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next try after ``attempts`` failed ones (jittered, capped)."""
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempts - 1))
        delay *= self._rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay * 6))
        return delay

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Try every entry that is due now; returns how many were tried."""
        entries = self.store.due(now or datetime.now(UTC))
        for entry in entries:
            await self._deliver(entry)
        return len(entries)

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Deliver until ``stop`` is set; wakes on ``wake`` or the next due time (≤ ``poll``)."""
        failed_at = -STATE_RETRY_SECONDS
        while not stop.is_set():
            # while state cannot be saved, a delivery could not be recorded (and a tracker that
            # cannot be searched would get it again every pass): try only now and then
            unsaved = self.health is not None and not self.health.writable
            if not unsaved or time.monotonic() - failed_at >= STATE_RETRY_SECONDS:
                try:
                    if await self.deliver_due() and self.health is not None:
                        self.health.saved()
                except Exception as exc:  # a store error must not end delivery for good
                    if self.health is not None and is_state_error(exc):
                        failed_at = time.monotonic()
                        self.health.failed(f"{self.store.path}: {exc}")  # logged once
                    else:
                        log.exception("outbox delivery pass failed; retrying")
            wait = poll
            next_due = self.store.next_due()
            if next_due is not None:
                wait = min(poll, max(0.0, (next_due - datetime.now(UTC)).total_seconds()))
            self.wake.clear()
            waiters = {asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=wait,
                                            return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(self, entry: OutboxEntry) -> None:
        now = datetime.now(UTC)
        record = self.store.incident(entry.incident_id)
        sink = self.sinks.get(entry.sink)
        if record is None:
            self._dead(entry, f"incident #{entry.incident_id} does not exist", now)
            return
        if sink is None:
            self._dead(entry, f"sink '{entry.sink}' is not configured", now)
            return
        view = incident_view(record, self.site_info(record.site))
        try:
            if entry.action == "open":
                if self.store.ticket(entry.incident_id, entry.sink) is None:
                    ref = await sink.find(view) or await sink.open(view)
                    self.store.record_ticket(entry.id, entry.incident_id, entry.sink,
                                             ref.external_id, ref.url, ref.extra,
                                             datetime.now(UTC))
                    log.info("ticket %s in %s for incident #%d: %s", ref.external_id,
                             entry.sink, entry.incident_id, view.title)
                else:
                    self.store.mark_delivered(entry, now)
            else:
                ticket = self.store.ticket(entry.incident_id, entry.sink)
                if ticket is None:
                    self._dead(entry, "no ticket to " + entry.action + " (its open action is a "
                               "dead letter)", now)
                    return
                ref = TicketRef(entry.sink, ticket.external_id, ticket.url, ticket.extra)
                if entry.action == "resolve":
                    await sink.resolve(ref, view)
                else:
                    event = TicketEvent(_event_kind(entry.event_kind), entry.text or "",
                                        entry.created_at)
                    await sink.update(ref, view, event)
                self.store.mark_delivered(entry, datetime.now(UTC))
        except PermanentSinkError as exc:
            self._dead(entry, scrub(str(exc)), now)
            return
        except RetryableSinkError as exc:
            self._retry(entry, scrub(str(exc)), exc.retry_after, now)
            return
        except Exception as exc:  # a sink bug: keep the entry, retry later
            if isinstance(exc, sqlite3.Error | StateError) and is_state_error(exc):
                raise  # the store cannot be written (disk full...): Outbox.run reports it
            log.exception("sink %s failed unexpectedly", entry.sink)
            self._retry(entry, f"unexpected {type(exc).__name__}", None, now)
            return
        self._count(entry, "delivered")

    def _retry(self, entry: OutboxEntry, error: str, retry_after: float | None,
               now: datetime) -> None:
        delay = self.backoff(entry.attempts + 1, retry_after)
        self.store.mark_retry(entry.id, now + timedelta(seconds=delay), error)
        log.warning("ticket %s for incident #%d via %s failed (attempt %d), retrying in %.1fs: "
                    "%s", entry.action, entry.incident_id, entry.sink, entry.attempts + 1, delay,
                    error)
        self._count(entry, "retry")

    def _dead(self, entry: OutboxEntry, error: str, now: datetime) -> None:
        self.store.mark_dead(entry.id, error, now)
        log.error("ticket %s for incident #%d via %s is a dead letter: %s", entry.action,
                  entry.incident_id, entry.sink, error)
        self._count(entry, "dead")

    def _count(self, entry: OutboxEntry, outcome: str) -> None:
        if self._on_attempt is not None:
            self._on_attempt(entry.sink, entry.action, outcome)


def _event_kind(value: str | None) -> EventKind:
    try:
        return EventKind(value or "note")
    except ValueError:
        return EventKind.NOTE
