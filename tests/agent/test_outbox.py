"""The real outbox delivering to the real sqlite sink, and to a test double of the sink protocol
that fails on purpose: retries with backoff and Retry-After, find-before-create after a crash,
dead letters with one clear log line, ticket text."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.config.secrets import clear_secrets, register_secret
from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.base import IncidentView, SinkBuildContext, TicketEvent, TicketRef, TicketSink
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo, incident_view, resolution_text
from agent.sinks.sqlite import SqliteSink
from agent.state.store import OutboxState, Store, db_path
from classifier import Evidence, FindingKind, Level, Phase, Plan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FailingSink:
    """Test double of the sink protocol: fails ``failures`` times, then delegates to sqlite."""

    def __init__(self, inner: SqliteSink, failures: int,
                 error: type[Exception] = RetryableSinkError,
                 retry_after: float | None = None) -> None:
        self.name = inner.name
        self.inner = inner
        self.failures = failures
        self.error = error
        self.retry_after = retry_after
        self.calls: list[str] = []

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if self.failures > 0:
            self.failures -= 1
            if self.error is RetryableSinkError:
                raise RetryableSinkError(f"{what}: HTTP 503", retry_after=self.retry_after)
            raise self.error(f"{what}: HTTP 401: invalid API token")

    async def find(self, incident: IncidentView) -> TicketRef | None:
        return await self.inner.find(incident)

    async def open(self, incident: IncidentView) -> TicketRef:
        self._maybe_fail("create ticket")
        return await self.inner.open(incident)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        self._maybe_fail("comment")
        await self.inner.update(ref, incident, event)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        self._maybe_fail("resolve")
        await self.inner.resolve(ref, incident)


@pytest.fixture
def store(state_location: str | Path) -> Iterator[Store]:
    """The incident store, once on SQLite and once on PostgreSQL."""
    s = Store(state_location)
    yield s
    s.close()


@pytest.fixture
async def sqlite_sink(tmp_path: Path) -> AsyncIterator[SqliteSink]:
    async with httpx.AsyncClient() as http:
        sink = SqliteSink("sqlite", SinkBuildContext("sqlite", lambda: http, tmp_path, "test"))
        yield sink
        sink.close()


def open_incident(store: Store, *actions: str) -> int:
    with store.transaction():
        incident_id = store.create_incident(
            fingerprint="storewatch-0123456789ab", site="acme-shop", check="checkout",
            kind=FindingKind.CHECKOUT_BROKEN, level=Level.L1, now=NOW,
            summary="add to cart returns HTTP 500", rule="checkout-broken",
            reason="L1 emergency: orders are impossible",
            evidence=Evidence(url="https://acme.test/cart", status=500, excerpt="Fatal error"))
        store.update_incident(incident_id, state=Phase.OPEN, opened_at=NOW, occurrences=2)
        for action in actions or ("open",):
            store.enqueue(incident_id, "sqlite", action, NOW,
                          "escalated" if action == "update" else None,
                          "escalated from L2 to L1" if action == "update" else None)
    return incident_id


def outbox(store: Store, sink: TicketSink, outcomes: list[str] | None = None) -> Outbox:
    def hook(sink: str, action: str, outcome: str) -> None:
        if outcomes is not None:
            outcomes.append(f"{action}:{outcome}")

    return Outbox(store, {"sqlite": sink}, lambda site: SiteInfo(), base_delay=0.001,
                  max_delay=0.01, rng=random.Random(1), on_attempt=hook)


async def drain(box: Outbox, rounds: int = 50) -> None:
    for _ in range(rounds):
        await box.deliver_due(datetime.now(UTC) + timedelta(seconds=1))
        if not box.store.outbox(OutboxState.PENDING):
            return
    raise AssertionError("outbox never drained")


@pytest.fixture
def local_db(tmp_path: Path) -> Path:
    """The sqlite sink's file (always SQLite in the state directory, whatever the store)."""
    return db_path(tmp_path)


def local_tickets(db: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        rows = conn.execute("SELECT incident_id, state, title FROM local_tickets").fetchall()
    finally:
        conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


def test_the_sqlite_sink_satisfies_the_protocol(sqlite_sink: SqliteSink) -> None:
    assert isinstance(sqlite_sink, TicketSink)


async def test_every_ticket_arrives_once_after_the_tracker_recovers(
        store: Store, sqlite_sink: SqliteSink, local_db: Path) -> None:
    incident_id = open_incident(store, "open", "update", "resolve")
    flaky = FailingSink(sqlite_sink, failures=4)
    outcomes: list[str] = []
    await drain(outbox(store, flaky, outcomes))
    assert outcomes == ["open:retry"] * 4 + ["open:delivered", "update:delivered",
                                             "resolve:delivered"]
    assert local_tickets(local_db) == [
        (incident_id, "resolved", "[L1] acme-shop — checkout: add to cart returns HTTP 500")]
    (ticket,) = store.tickets()
    assert (ticket.external_id, ticket.state) == ("LOCAL-1", "resolved")
    assert [e.state for e in store.outbox()] == [OutboxState.DELIVERED] * 3
    assert store.outbox()[0].attempts == 4


async def test_retry_after_is_honoured(store: Store, sqlite_sink: SqliteSink) -> None:
    open_incident(store)
    box = Outbox(store, {"sqlite": FailingSink(sqlite_sink, 1, retry_after=120)},
                 lambda site: SiteInfo(), base_delay=1, max_delay=60)
    before = datetime.now(UTC)
    await box.deliver_due()
    (entry,) = store.outbox()
    assert entry.state is OutboxState.PENDING and entry.last_error == "create ticket: HTTP 503"
    assert entry.next_at >= before + timedelta(seconds=120)
    assert store.due(before + timedelta(seconds=119)) == []


@pytest.mark.parametrize(("attempts", "low", "high"), [(1, 1, 2), (2, 2, 4), (3, 4, 8),
                                                       (10, 30, 60)],
                         ids=["first", "second", "third", "capped"])
def test_backoff_is_exponential_jittered_and_capped(store: Store, attempts: int, low: float,
                                                     high: float) -> None:
    box = Outbox(store, {}, lambda site: SiteInfo(), base_delay=2, max_delay=60,
                 rng=random.Random(7))
    delays = {box.backoff(attempts, None) for _ in range(20)}
    assert all(low <= d <= high for d in delays) and len(delays) > 1


async def test_a_crash_after_create_does_not_duplicate(store: Store, sqlite_sink: SqliteSink,
                                                       local_db: Path) -> None:
    incident_id = open_incident(store)
    record = store.incident(incident_id)
    assert record is not None
    # the tracker created the ticket, then the agent died before recording it
    created = await sqlite_sink.open(incident_view(record, SiteInfo()))
    await drain(outbox(store, sqlite_sink))
    assert len(local_tickets(local_db)) == 1
    assert store.ticket(incident_id, "sqlite").external_id == created.external_id  # type: ignore[union-attr]


async def test_permanent_errors_are_dead_letters_with_one_clear_line(
        store: Store, sqlite_sink: SqliteSink, caplog: pytest.LogCaptureFixture,
        local_db: Path) -> None:
    open_incident(store, "open", "resolve")
    outcomes: list[str] = []
    box = outbox(store, FailingSink(sqlite_sink, 1, PermanentSinkError), outcomes)
    with caplog.at_level(logging.ERROR, logger="agent.sinks.outbox"):
        await drain(box)
    assert outcomes == ["open:dead", "resolve:dead"]
    dead = store.outbox(OutboxState.DEAD)
    assert [(e.action, e.last_error) for e in dead] == [
        ("open", "create ticket: HTTP 401: invalid API token"),
        ("resolve", "no ticket to resolve (its open action is a dead letter)")]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("ticket open for incident #1 via sqlite is a dead letter: create ticket: "
                        "HTTP 401: invalid API token")
    assert local_tickets(local_db) == []


async def test_an_unconfigured_sink_is_a_dead_letter(store: Store) -> None:
    open_incident(store)
    await Outbox(store, {}, lambda site: SiteInfo()).deliver_due()
    (entry,) = store.outbox()
    assert (entry.state, entry.last_error) == (OutboxState.DEAD,
                                                "sink 'sqlite' is not configured")


async def test_a_sink_bug_is_retried_not_lost(store: Store, sqlite_sink: SqliteSink,
                                              local_db: Path) -> None:
    open_incident(store)
    await drain(outbox(store, FailingSink(sqlite_sink, 2, ZeroDivisionError)))
    assert len(local_tickets(local_db)) == 1


@pytest.fixture
def secret() -> Iterator[str]:
    register_secret("s3cr3t-token")
    yield "s3cr3t-token"
    clear_secrets()


def test_ticket_text(store: Store, secret: str) -> None:
    with store.transaction():
        incident_id = store.create_incident(
            fingerprint="storewatch-0123456789ab", site="acme-shop", check="checkout",
            kind=FindingKind.CHECKOUT_BROKEN, level=Level.L1, now=NOW,
            summary="add to cart returns HTTP 500", rule="checkout-broken",
            reason="orders are impossible",
            evidence=Evidence(url=f"https://acme.test/cart?token={secret}", status=500,
                              excerpt=f"Fatal error near {secret}", timings={"total": 0.25}))
        store.update_incident(incident_id, state=Phase.OPEN, opened_at=NOW, occurrences=3,
                              last_seen=NOW + timedelta(minutes=2),
                              suppressed=("search: search_broken",),
                              resolved_at=NOW + timedelta(minutes=5, seconds=30))
    record = store.incident(incident_id)
    assert record is not None
    view = incident_view(record, SiteInfo(Plan.SUPPORT_PACKAGE, "Dana Scully",
                                          "https://grafana.test/d/shop?site={site}&c={check}"))
    assert view.title == "[L1] acme-shop — checkout: add to cart returns HTTP 500"
    assert view.priority == 1
    for part in ("L1 — emergency", "site is down, orders or payments impossible",
                 "https://acme.test/cart?token=***", "HTTP status: 500", "total: 250 ms",
                 "Fatal error near ***", "First seen:** 2026-03-01T12:00:00Z",
                 "Last seen:** 2026-03-01T12:02:00Z", "Occurrences:** 3",
                 "checkout-broken — orders are impossible", "- search: search_broken",
                 "Plan:** support-package", "Account manager:** Dana Scully",
                 "https://grafana.test/d/shop?site=acme-shop&c=checkout",
                 "storewatch-0123456789ab"):
        assert part in view.body, part
    assert secret not in view.body and secret not in str(view.evidence)
    assert resolution_text(view) == ("Recovered at 2026-03-01T12:05:30Z after 5m30s (opened "
                                     "2026-03-01T12:00:00Z, 3 failing runs).")


class DownUntil:
    """A tracker that answers 503 (optionally with ``Retry-After``) until the fake clock reaches
    ``until``, then works (delegating to the real sqlite sink); records when it was asked."""

    def __init__(self, inner: SqliteSink, clock: list[datetime], until: datetime,
                 retry_after: float | None = None) -> None:
        self.name = inner.name
        self.inner = inner
        self.clock = clock
        self.until = until
        self.retry_after = retry_after
        self.asked: list[datetime] = []

    def _check(self) -> None:
        self.asked.append(self.clock[0])
        if self.clock[0] < self.until:
            raise RetryableSinkError("create ticket: HTTP 503", retry_after=self.retry_after)

    async def find(self, incident: IncidentView) -> TicketRef | None:
        self._check()
        return await self.inner.find(incident)

    async def open(self, incident: IncidentView) -> TicketRef:
        return await self.inner.open(incident)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        await self.inner.update(ref, incident, event)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        await self.inner.resolve(ref, incident)


async def deliver_through_outage(store: Store, sink: DownUntil, clock: list[datetime],
                                 **options: float) -> datetime:
    """Run the outbox on the fake clock (jumping to each next due time) until the ticket is
    delivered; returns the fake time of delivery."""
    box = Outbox(store, {"sqlite": sink}, lambda site: SiteInfo(), rng=random.Random(3),
                 clock=lambda: clock[0], **options)  # type: ignore[arg-type]
    for _ in range(1000):
        await box.deliver_due()
        if not store.outbox(OutboxState.PENDING):
            return clock[0]
        next_due = store.next_due()
        assert next_due is not None
        clock[0] = max(clock[0], next_due)
    raise AssertionError("never delivered")


def set_level(store: Store, incident_id: int, level: Level) -> None:
    with store.transaction():
        store.update_incident(incident_id, level=level)


async def test_an_l1_ticket_goes_out_within_30s_of_a_10_minute_tracker_outage(
        store: Store, sqlite_sink: SqliteSink, local_db: Path) -> None:
    open_incident(store)  # an L1 incident
    clock = [NOW]
    recovered = NOW + timedelta(minutes=10)
    sink = DownUntil(sqlite_sink, clock, recovered)
    delivered = await deliver_through_outage(store, sink, clock)
    assert (delivered - recovered) <= timedelta(seconds=30)
    gaps = [(b - a).total_seconds() for a, b in zip(sink.asked, sink.asked[1:], strict=False)]
    assert max(gaps) <= 30  # no attempt ever waited past the L1 cap
    assert len(local_tickets(local_db)) == 1


async def test_lower_levels_back_off_further_but_within_their_own_cap(
        store: Store, sqlite_sink: SqliteSink) -> None:
    set_level(store, open_incident(store), Level.L3)
    clock = [NOW]
    recovered = NOW + timedelta(minutes=10)
    sink = DownUntil(sqlite_sink, clock, recovered)
    delivered = await deliver_through_outage(store, sink, clock)
    gaps = [(b - a).total_seconds() for a, b in zip(sink.asked, sink.asked[1:], strict=False)]
    assert 30 < max(gaps) <= 300
    assert delivered - recovered <= timedelta(seconds=300)


async def test_retry_after_is_honoured_for_l1_beyond_its_cap(
        store: Store, sqlite_sink: SqliteSink) -> None:
    open_incident(store)
    clock = [NOW]
    sink = DownUntil(sqlite_sink, clock, NOW + timedelta(minutes=5), retry_after=120)
    await deliver_through_outage(store, sink, clock)
    gaps = [(b - a).total_seconds() for a, b in zip(sink.asked, sink.asked[1:], strict=False)]
    assert gaps and min(gaps) >= 120


class HangingSink:
    """A tracker that accepts the connection and never answers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = asyncio.Event()

    async def _hang(self) -> None:
        self.asked.set()
        await asyncio.Event().wait()

    async def find(self, incident: IncidentView) -> TicketRef | None:
        await self._hang()
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        await self._hang()
        raise AssertionError("unreachable")

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        await self._hang()

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        await self._hang()


async def test_a_hanging_sink_does_not_delay_another_sinks_ticket(
        store: Store, sqlite_sink: SqliteSink, local_db: Path) -> None:
    incident_id = open_incident(store)
    with store.transaction():  # the hung tracker's entry comes first in the outbox
        store.enqueue(incident_id, "hung", "open", NOW)
    store.conn.execute("UPDATE outbox SET sink = CASE id WHEN 1 THEN 'hung' ELSE 'sqlite' END")
    hung = HangingSink("hung")
    box = Outbox(store, {"hung": hung, "sqlite": sqlite_sink}, lambda site: SiteInfo())
    stop = asyncio.Event()
    worker = asyncio.create_task(box.run(stop, poll=0.05))
    try:
        await asyncio.wait_for(hung.asked.wait(), 30)
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        async with asyncio.timeout(30):  # the sqlite ticket arrives while "hung" still hangs
            while not local_tickets(local_db):
                assert not worker.done()
                await asyncio.sleep(0.01)
        delay = loop.time() - asked_at
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    print(f"sqlite ticket {delay:.3f}s after the hung tracker was asked")
    (hung_entry, sqlite_entry) = store.outbox()
    assert (hung_entry.sink, hung_entry.state) == ("hung", OutboxState.PENDING)
    assert (sqlite_entry.sink, sqlite_entry.state) == ("sqlite", OutboxState.DELIVERED)


async def test_each_attempt_has_its_own_deadline(store: Store) -> None:
    open_incident(store)
    outcomes: list[str] = []
    box = Outbox(store, {"sqlite": HangingSink("sqlite")}, lambda site: SiteInfo(),
                 attempt_timeout=0.2,
                 on_attempt=lambda sink, action, outcome: outcomes.append(outcome))
    await asyncio.wait_for(box.deliver_due(), 30)
    (entry,) = store.outbox()
    assert outcomes == ["retry"]
    assert (entry.state, entry.attempts, entry.last_error) == (
        OutboxState.PENDING, 1, "no answer within 0.2s")
