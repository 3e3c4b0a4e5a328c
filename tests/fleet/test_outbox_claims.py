"""Outbox claims on a real shared store: the compare-and-set, the lease, release on finish, and
two agents' outboxes delivering one queue exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.sinks.base import IncidentView, SinkBuildContext, TicketEvent, TicketRef
from agent.sinks.outbox import Outbox, claim_lease
from agent.sinks.render import SiteInfo
from agent.sinks.sqlite import SqliteSink, SqliteSinkConfig, build
from agent.state.store import OutboxState, Store, db_path
from classifier import Evidence, FindingKind, Level

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a, b = Store(db_path(tmp_path)), Store(db_path(tmp_path))
    yield a, b
    a.close()
    b.close()


def incident(store: Store, *actions: str, fp: str = "storewatch-00000000000f") -> int:
    with store.transaction():
        incident_id = store.create_incident(
            fingerprint=fp, site="shop", check="home", kind=FindingKind.SITE_DOWN,
            level=Level.L1, now=NOW, summary="home page answered HTTP 503", rule="site-down",
            reason="L1", evidence=Evidence(url="http://shop/", status=503))
        for action in actions:
            store.enqueue(incident_id, "local", action, NOW)
    return incident_id


def test_one_claim_at_a_time_until_the_lease_runs_out(stores: tuple[Store, Store]) -> None:
    a, b = stores
    incident(a, "open")
    (entry,) = b.due(NOW)
    assert a.claim(entry.id, "a1/1", NOW, LEASE)
    assert not b.claim(entry.id, "a2/2", NOW + timedelta(seconds=9), LEASE)
    assert b.due(NOW + timedelta(seconds=9)) == []  # claimed: not due for anyone else
    assert b.next_due() == NOW + LEASE  # a worker waits for the lease, not a busy loop
    later = NOW + timedelta(seconds=11)
    (expired,) = b.due(later)
    assert expired.claimed_by == "a1/1"  # the claim of an agent that died
    assert b.claim(entry.id, "a2/2", later, LEASE)
    assert b.claimant(entry.id) == "a2/2"
    assert not a.claim(entry.id, "a1/1", later, LEASE)


def test_finishing_releases_the_claim(stores: tuple[Store, Store]) -> None:
    a, b = stores
    incident(a, "open", "resolve")
    (first,) = a.due(NOW)
    assert a.claim(first.id, "a1/1", NOW, LEASE)
    a.mark_retry(first.id, NOW, "HTTP 503")
    assert b.claimant(first.id) is None
    assert b.claim(first.id, "a2/2", NOW, LEASE)
    b.record_ticket(first.id, first.incident_id, "local", "LOCAL-1", None, {}, NOW)
    (second,) = a.due(NOW)  # the resolve, only now first in line
    assert second.action == "resolve" and second.claimed_by is None
    assert not a.claim(first.id, "a1/1", NOW, LEASE)  # delivered: nothing to claim


def test_a_claim_outlasts_an_attempt() -> None:
    assert claim_lease(60.0) == 90.0
    assert claim_lease(1.0) == 3.0


class SlowSink:
    """The sqlite sink, each open taking a while (deliveries overlap between agents)."""

    def __init__(self, inner: SqliteSink) -> None:
        self.inner = inner
        self.name = inner.name
        self.opens = 0

    async def find(self, incident: IncidentView) -> TicketRef | None:
        return await self.inner.find(incident)

    async def open(self, incident: IncidentView) -> TicketRef:
        self.opens += 1
        await asyncio.sleep(0.05)
        return await self.inner.open(incident)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        await self.inner.update(ref, incident, event)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        await self.inner.resolve(ref, incident)


async def test_two_agents_outboxes_deliver_each_action_once(tmp_path: Path,
                                                            stores: tuple[Store, Store]) -> None:
    a, b = stores
    ids = [incident(a, "open", "update", "resolve", fp=f"storewatch-{n:012x}")
           for n in range(6)]
    sinks = []
    boxes = []
    for store, name in ((a, "a1/1"), (b, "a2/2")):
        ctx = SinkBuildContext("local", lambda: None, tmp_path, "test")  # type: ignore[arg-type,return-value]
        sink = SlowSink(build(SqliteSinkConfig(type="sqlite"), ctx))
        sinks.append(sink)
        boxes.append(Outbox(store, {"local": sink}, lambda _site: SiteInfo(), claimer=name))
    for _ in range(40):
        await asyncio.gather(*(box.deliver_due() for box in boxes))
        if not a.outbox(OutboxState.PENDING):
            break
    assert a.outbox(OutboxState.PENDING) == []
    assert sum(s.opens for s in sinks) == len(ids)
    rows = a.conn.execute("SELECT incident_id, COUNT(*) AS n, MIN(state) AS s FROM "
                          "local_tickets GROUP BY incident_id").fetchall()
    assert {(r["incident_id"], r["n"], r["s"]) for r in rows} == {(i, 1, "resolved")
                                                                   for i in ids}
    for sink in sinks:
        sink.inner.close()


def test_a_restarted_agent_takes_back_its_dead_predecessors_claims(
        stores: tuple[Store, Store]) -> None:
    a, b = stores
    incident(a, "open")
    incident(a, "open", fp="storewatch-0000000000ff")
    first, second = a.due(NOW)
    assert a.claim(first.id, "a1/100", NOW, LEASE)  # a1's process 100 died holding it
    assert a.claim(second.id, "a10/7", NOW, LEASE)  # another agent whose name starts alike
    assert b.release_claims("a1", "a1/200") == 1  # a1 is back as process 200
    assert [e.id for e in b.due(NOW)] == [first.id]
    assert b.claimant(second.id) == "a10/7"


class BusyAtFirst(Store):
    """The real store whose first ``release_claims`` finds the database locked (another
    connection of the starting agent writing at that moment)."""

    busy = 1

    def release_claims(self, agent: str, keep: str) -> int:
        if self.busy:
            self.busy -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().release_claims(agent, keep)


async def test_a_restart_takes_back_the_claims_even_if_the_store_is_busy_at_first(
        tmp_path: Path) -> None:
    """A restarted agent whose first try to take back its dead predecessor's claims failed
    tries again: the action goes out within a poll, not after the 90-s lease."""
    store = BusyAtFirst(db_path(tmp_path))
    ctx = SinkBuildContext("local", lambda: None, tmp_path, "test")  # type: ignore[arg-type,return-value]
    sink = build(SqliteSinkConfig(type="sqlite"), ctx)
    try:
        incident(store, "open")
        (entry,) = store.due(NOW)
        now = datetime.now(UTC)
        assert store.claim(entry.id, "a1/100", now, timedelta(seconds=claim_lease(60.0)))
        box = Outbox(store, {"local": sink}, lambda _site: SiteInfo(), claimer="a1/200")
        stop = asyncio.Event()
        running = asyncio.create_task(box.run(stop, poll=0.05))
        try:
            for _ in range(100):
                if not store.outbox(OutboxState.PENDING):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
        assert store.busy == 0
        assert store.outbox(OutboxState.PENDING) == []
    finally:
        sink.close()
        store.close()


def test_an_agent_renews_its_own_claim(stores: tuple[Store, Store]) -> None:
    a, _ = stores
    incident(a, "open")
    (entry,) = a.due(NOW)
    assert a.claim(entry.id, "a1/1", NOW, LEASE)  # an attempt the store could not record
    assert a.due(NOW, claimer="a2/2") == []
    assert [e.id for e in a.due(NOW, claimer="a1/1")] == [entry.id]
    assert a.claim(entry.id, "a1/1", NOW + timedelta(seconds=1), LEASE)
