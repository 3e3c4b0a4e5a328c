"""Delivery of the outbox: every ticket action reaches its sink once, in order, or is a dead letter.

* Each sink has a worker of its own: a tracker that hangs or is down delays only its own
  tickets, never another sink's. Entries of one (incident, sink) are delivered in the order
  they were queued; an ``open`` is therefore always done before the updates and the resolve of
  the same ticket. Within a sink, L1 incidents go first.
* Every attempt has its own deadline (``attempt_timeout``); an attempt past it is a retryable
  failure.
* ``open`` asks the sink first (``sink.find``) whether a ticket with the incident's fingerprint
  already exists, so a crash between "created in the tracker" and "recorded here" cannot create
  a second ticket; the found or created ticket is recorded together with marking the entry
  delivered, in one transaction.
* Fleet: several agents may share one store. Each entry is claimed before delivery with a
  compare-and-set on the outbox row (``Store.claim``: only while nobody holds a live claim), for
  a lease longer than an attempt's deadline (``claim_lease``), and released when the attempt
  is recorded (delivered, retry, dead letter). An agent that dies mid-delivery leaves its claim
  to run out; then another agent delivers the entry (``open`` asks ``sink.find`` first, as
  above). The claimant is ``<agent.name>/<pid>``: an agent that restarts takes back the claims
  of its dead predecessor at once (a single agent delivers after a crash as soon as it is back).
  Workers poll the store at least every ``poll`` seconds, so entries queued by other agents are
  noticed without a wake-up.
* Retryable failures wait ``base * 2**attempts`` with jitter, capped at ``l1_max_delay`` (30 s)
  for L1 incidents and ``max_delay`` (5 min) for the others, so an L1 ticket goes out at most
  30 s after a tracker comes back; a tracker's ``Retry-After`` is honoured on top (up to an
  hour). Permanent failures make the entry a dead letter, logged once on one line. Nothing is
  removed: delivered and dead entries stay for ``storewatch tickets list``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.base import EventKind, TicketEvent, TicketRef, TicketSink
from agent.sinks.render import SiteInfo, incident_view
from agent.state.health import StateHealth, is_database_error, is_state_error
from agent.state.store import OutboxEntry, Store
from agent.state.thread import StoreThread, run_inline
from classifier import Level

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

STATE_RETRY_SECONDS = 30.0
"""While the store cannot be written, how often a delivery pass is tried anyway."""

ATTEMPT_TIMEOUT_SECONDS = 60.0
"""Deadline of one delivery attempt (``find`` + ``open``, or one update/resolve)."""

RETRY_AFTER_CAP_SECONDS = 3600.0
"""The longest ``Retry-After`` honoured."""

CLAIM_MARGIN_SECONDS = 2.0
"""A claim outlasts the attempt's deadline by this much at least (the store writes after it)."""

DeliveryHook = Callable[[str, str, str], None]
"""Called with (sink, action, outcome) after each attempt; outcome: delivered, retry, dead."""

ClaimHook = Callable[[str], None]
"""Called with a claim's outcome: ``taken``, ``taken_over`` (another agent's claim had run
out: it died or hung mid-delivery) or ``lost`` (this agent's ran out before it finished)."""


def claim_lease(attempt_timeout: float) -> float:
    """Seconds an agent's claim on an outbox entry lasts: the attempt's deadline plus half of
    it (at least ``CLAIM_MARGIN_SECONDS``)."""
    return attempt_timeout + max(CLAIM_MARGIN_SECONDS, attempt_timeout / 2)


def default_claimer() -> str:
    """This process as a claimant: ``host/pid``."""
    return f"{socket.gethostname() or 'storewatch'}/{os.getpid()}"


class Outbox:
    """Delivers due outbox entries to their sinks, one worker per sink."""

    def __init__(self, store: Store, sinks: Mapping[str, TicketSink],
                 site_info: Callable[[str], SiteInfo], *, base_delay: float = 2.0,
                 max_delay: float = 300.0, l1_max_delay: float = 30.0,
                 attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
                 rng: random.Random | None = None,
                 on_attempt: DeliveryHook | None = None,
                 health: StateHealth | None = None,
                 db: StoreThread | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 claimer: str | None = None, on_claim: ClaimHook | None = None) -> None:
        self.store = store
        self.health = health
        self.sinks = dict(sinks)
        self.site_info = site_info
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.l1_max_delay = l1_max_delay
        self.attempt_timeout = attempt_timeout
        self._rng = rng or random.Random()
        self._on_attempt = on_attempt
        self._db = db.run if db is not None else run_inline
        self._clock = clock
        self.claimer = claimer or default_claimer()
        """Who this outbox claims entries as (unique per agent process)."""
        self._on_claim = on_claim
        self.wake = asyncio.Event()
        self._wakes: dict[str, asyncio.Event] = {}

    def backoff(self, attempts: int, retry_after: float | None,
                level: Level | None = None) -> float:
        """Seconds before the next try after ``attempts`` failed ones (jittered, capped per
        level: ``l1_max_delay`` for L1, ``max_delay`` otherwise; ``Retry-After`` on top)."""
        cap = self.l1_max_delay if level is Level.L1 else self.max_delay
        delay: float = min(cap, self.base_delay * 2.0 ** max(0, attempts - 1))
        delay *= self._rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
        return delay

    async def deliver_due(self, now: datetime | None = None, sink: str | None = None) -> int:
        """Try every entry (of ``sink``) that is due now, one after another; returns how many
        were tried."""
        entries = await self._db(self.store.due, now or self._clock(), sink=sink,
                                 claimer=self.claimer)
        tried = 0
        for entry in entries:
            lease = timedelta(seconds=claim_lease(self.attempt_timeout))
            if not await self._db(self.store.claim, entry.id, self.claimer, self._clock(),
                                  lease):
                continue  # another agent took it meanwhile
            taken_over = entry.claimed_by not in (None, self.claimer)
            if taken_over:
                log.warning("ticket %s for incident #%d via %s: the claim of %s ran out; "
                            "delivering it here", entry.action, entry.incident_id, entry.sink,
                            entry.claimed_by)
            self._claimed("taken_over" if taken_over else "taken")
            tried += 1
            await self._deliver(entry)
        return tried

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Deliver until ``stop`` is set: one worker per configured sink (sinks can change on
        a reload), entries of sinks no longer configured become dead letters. ``wake`` wakes
        every worker."""
        workers: dict[str, asyncio.Task[None]] = {}
        released = await self._release_predecessors()
        try:
            while not stop.is_set():
                if not released:  # the store was busy or down at start: until it works
                    released = await self._release_predecessors()
                for name in set(workers) - set(self.sinks):
                    workers.pop(name).cancel()
                    self._wakes.pop(name, None)
                for name in self.sinks:
                    if name not in workers or workers[name].done():
                        self._wakes[name] = asyncio.Event()
                        workers[name] = asyncio.create_task(
                            self._sink_worker(name, stop, poll), name=f"outbox {name}")
                for wake in self._wakes.values():
                    wake.set()
                try:
                    orphans = await self._db(self.store.pending_sinks) - set(self.sinks)
                    for name in sorted(orphans):
                        await self.deliver_due(sink=name)  # each becomes a dead letter
                except Exception as exc:
                    if not is_state_error(exc):  # state errors: the workers report them
                        log.exception("outbox pass over unconfigured sinks failed; retrying")
                self.wake.clear()
                await _first(stop, self.wake, timeout=poll)
        finally:
            for task in workers.values():
                task.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)

    async def query(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` (a call on ``store``) in the store's own thread, like every
        store call of the outbox: the store's connection must never be used by two threads at
        once (on SQLite a read left open there makes the store thread's next write transaction
        fail at once with "database is locked")."""
        return await self._db(fn, *args, **kwargs)

    async def _release_predecessors(self) -> bool:
        """Take back the claims this agent (same name, earlier process) held when it died;
        False if the store could not be asked (tried again on the next pass, so a crashed
        agent's actions wait for its restart, not for the end of their lease)."""
        agent = self.claimer.partition("/")[0]
        try:
            released = await self._db(self.store.release_claims, agent, self.claimer)
        except Exception as exc:  # the workers report an unusable store
            log.debug("could not release earlier claims yet: %s", exc)
            return False
        if released:
            log.warning("took back %d ticket action(s) an earlier run of agent %s had claimed "
                        "when it stopped", released, agent)
        return True

    async def _sink_worker(self, name: str, stop: asyncio.Event, poll: float) -> None:
        """Deliver the due entries of one sink until ``stop`` (or the sink is removed)."""
        failed_at = -STATE_RETRY_SECONDS
        wake = self._wakes[name]
        while not stop.is_set() and name in self.sinks:
            wake.clear()
            # while state cannot be saved, a delivery could not be recorded (and a tracker that
            # cannot be searched would get it again every pass): try only now and then
            unsaved = self.health is not None and not self.health.writable
            wait = poll
            if not unsaved or time.monotonic() - failed_at >= STATE_RETRY_SECONDS:
                try:
                    if await self.deliver_due(sink=name) and self.health is not None:
                        self.health.saved()
                    next_due = await self._db(self.store.next_due, name)
                    if next_due is not None:
                        wait = min(poll, max(0.0, (next_due - self._clock()).total_seconds()))
                except Exception as exc:  # a store error must not end delivery for good
                    if self.health is not None and is_state_error(exc):
                        failed_at = time.monotonic()
                        self.health.failed(f"{self.store.where}: {exc}")  # logged once
                    else:
                        log.exception("outbox delivery pass of %s failed; retrying", name)
            await _first(stop, wake, timeout=wait)

    async def _deliver(self, entry: OutboxEntry) -> None:
        now = self._clock()
        record = await self._db(self.store.incident, entry.incident_id)
        sink = self.sinks.get(entry.sink)
        if record is None:
            await self._dead(entry, f"incident #{entry.incident_id} does not exist", now)
            return
        if sink is None:
            await self._dead(entry, f"sink '{entry.sink}' is not configured", now)
            return
        view = incident_view(record, self.site_info(record.site))
        try:
            ticket = await self._db(self.store.ticket, entry.incident_id, entry.sink)
            if entry.action == "open":
                if ticket is None:
                    async with asyncio.timeout(self.attempt_timeout):
                        ref = await sink.find(view) or await sink.open(view)
                    await self._check_claim(entry)
                    await self._db(self.store.record_ticket, entry.id, entry.incident_id,
                                   entry.sink, ref.external_id, ref.url, ref.extra,
                                   self._clock())
                    log.info("ticket %s in %s for incident #%d: %s", ref.external_id,
                             entry.sink, entry.incident_id, view.title)
                else:
                    await self._db(self.store.mark_delivered, entry, now)
            else:
                if ticket is None:
                    await self._dead(entry, "no ticket to " + entry.action + " (its open action "
                                     "is a dead letter)", now)
                    return
                ref = TicketRef(entry.sink, ticket.external_id, ticket.url, ticket.extra)
                async with asyncio.timeout(self.attempt_timeout):
                    if entry.action == "resolve":
                        await sink.resolve(ref, view)
                    else:
                        event = TicketEvent(_event_kind(entry.event_kind), entry.text or "",
                                            entry.created_at)
                        await sink.update(ref, view, event)
                await self._check_claim(entry)
                await self._db(self.store.mark_delivered, entry, self._clock())
        except PermanentSinkError as exc:
            await self._dead(entry, scrub(str(exc)), now)
            return
        except RetryableSinkError as exc:
            await self._retry(entry, record.level, scrub(str(exc)), exc.retry_after, now)
            return
        except TimeoutError:
            await self._retry(entry, record.level, f"no answer within {self.attempt_timeout:g}s",
                              None, now)
            return
        except Exception as exc:  # a sink bug: keep the entry, retry later
            if is_database_error(exc):
                raise  # the store cannot be written (disk full...): the worker reports it
            log.exception("sink %s failed unexpectedly", entry.sink)
            await self._retry(entry, record.level, f"unexpected {type(exc).__name__}", None, now)
            return
        self._count(entry, "delivered")

    async def _check_claim(self, entry: OutboxEntry) -> None:
        """Count (and log) a claim that ran out before its delivery finished."""
        holder = await self._db(self.store.claimant, entry.id)
        if holder != self.claimer:
            log.warning("ticket %s for incident #%d via %s took longer than the claim's lease "
                        "(%s holds it now)", entry.action, entry.incident_id, entry.sink,
                        holder or "nobody")
            self._claimed("lost")

    def _claimed(self, outcome: str) -> None:
        if self._on_claim is not None:
            self._on_claim(outcome)

    async def _retry(self, entry: OutboxEntry, level: Level | None, error: str,
                     retry_after: float | None, now: datetime) -> None:
        delay = self.backoff(entry.attempts + 1, retry_after, level)
        await self._db(self.store.mark_retry, entry.id, now + timedelta(seconds=delay), error)
        log.warning("ticket %s for incident #%d via %s failed (attempt %d), retrying in %.1fs: "
                    "%s", entry.action, entry.incident_id, entry.sink, entry.attempts + 1, delay,
                    error)
        self._count(entry, "retry")

    async def _dead(self, entry: OutboxEntry, error: str, now: datetime) -> None:
        await self._db(self.store.mark_dead, entry.id, error, now)
        log.error("ticket %s for incident #%d via %s is a dead letter: %s", entry.action,
                  entry.incident_id, entry.sink, error)
        self._count(entry, "dead")

    def _count(self, entry: OutboxEntry, outcome: str) -> None:
        if self._on_attempt is not None:
            self._on_attempt(entry.sink, entry.action, outcome)


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, at most ``timeout`` seconds."""
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _event_kind(value: str | None) -> EventKind:
    try:
        return EventKind(value or "note")
    except ValueError:
        return EventKind.NOTE
