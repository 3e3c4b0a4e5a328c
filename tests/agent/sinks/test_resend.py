"""The resender over a real store and outbox: only ``PeriodicResend`` sinks get re-sends, once
per interval, only while the incident is open and its ticket exists; a failed re-send is
retried; a resolve during a re-send is repeated after it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import RetryableSinkError
from agent.sinks.base import EventKind, IncidentView, PeriodicResend, TicketEvent, TicketRef
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.sinks.resend import Resender
from agent.state.store import IncidentRecord, Store, TicketRecord, db_path
from agent.state.thread import StoreThread
from classifier import Phase
from tests.agent.test_outbox import NOW, drain, open_incident


class Recorder:
    """A sink that records every call; with ``resend_interval`` it is a PeriodicResend sink."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []
        self.fail_updates = 0
        self.on_update: list[Store] = []

    async def find(self, incident: IncidentView) -> TicketRef | None:
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        self.calls.append("open")
        return TicketRef(self.name, f"{self.name}-{incident.id}")

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        if self.fail_updates:
            self.fail_updates -= 1
            raise RetryableSinkError("POST /api/v2/alerts: HTTP 503")
        self.calls.append(f"update:{event.kind}")
        for s in self.on_update:  # the incident resolves while this re-send is in flight
            s.update_incident(1, state=Phase.RESOLVED, resolved_at=NOW)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        self.calls.append("resolve")


class Alerting(Recorder):
    resend_interval = 60.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(db_path(tmp_path))
    yield s
    s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(store: Store) -> tuple[Alerting, Recorder, Outbox]:
    alerts, jira = Alerting("am"), Recorder("jira")
    box = Outbox(store, {"am": alerts, "jira": jira}, lambda site: SiteInfo())
    return alerts, jira, box


async def test_only_periodic_sinks_get_a_resend_once_per_interval(store: Store) -> None:
    alerts, jira, box = setup(store)
    assert isinstance(alerts, PeriodicResend) and not isinstance(jira, PeriodicResend)
    incident = open_incident(store)
    with store.transaction():
        store.enqueue(incident, "am", "open", NOW)
        store.enqueue(incident, "jira", "open", NOW)
    clock = Clock()
    resender = Resender(lambda: box, clock)
    assert await resender.resend_due() == 0  # no ticket recorded yet: the outbox opens first
    await drain(box)
    assert await resender.resend_due() == 1
    clock.now += 59
    assert await resender.resend_due() == 0
    clock.now += 1
    assert await resender.resend_due() == 1
    assert alerts.calls == ["open", "update:reminder", "update:reminder"]
    assert jira.calls == ["open"]  # a ticket gets no comment per interval
    assert resender.poll_seconds() == 15.0

    store.update_incident(incident, state=Phase.RESOLVED, resolved_at=NOW)
    clock.now += 600
    assert await resender.resend_due() == 0
    assert alerts.calls.count(f"update:{EventKind.REMINDER}") == 2


async def test_a_failed_resend_is_retried_within_half_an_interval(store: Store) -> None:
    alerts, _, box = setup(store)
    incident = open_incident(store)
    with store.transaction():
        store.enqueue(incident, "am", "open", NOW)
    await drain(box)
    clock = Clock()
    resender = Resender(lambda: box, clock)
    alerts.fail_updates = 1
    assert await resender.resend_due() == 0
    clock.now += 29
    assert await resender.resend_due() == 0
    clock.now += 1
    assert await resender.resend_due() == 1


async def test_a_resolve_during_a_resend_is_sent_again_after_it(store: Store) -> None:
    alerts, _, box = setup(store)
    incident = open_incident(store)
    with store.transaction():
        store.enqueue(incident, "am", "open", NOW)
    await drain(box)
    alerts.on_update.append(store)
    assert await Resender(lambda: box, Clock()).resend_due() == 1
    assert alerts.calls == ["open", "update:reminder", "resolve"]


class ThreadNotingStore(Store):
    """The real store, noting which thread each read of the resender runs on."""

    threads: set[str]

    def active_incidents(self, site: str | None = None) -> list[IncidentRecord]:
        self.threads.add(threading.current_thread().name)
        return super().active_incidents(site)

    def ticket(self, incident_id: int, sink: str) -> TicketRecord | None:
        self.threads.add(threading.current_thread().name)
        return super().ticket(incident_id, sink)

    def incident(self, incident_id: int) -> IncidentRecord | None:
        self.threads.add(threading.current_thread().name)
        return super().incident(incident_id)


async def test_the_resender_reads_the_store_in_the_store_thread(tmp_path: Path) -> None:
    """The daemon's store connection belongs to its store thread: a read from the event loop
    at the same moment as the outbox's write transaction made that write fail at once with
    "database is locked" (seen as a crashed agent's claims not taken back at restart)."""
    store = ThreadNotingStore(db_path(tmp_path))
    store.threads = set()
    db = StoreThread()
    try:
        alerts = Alerting("am")
        box = Outbox(store, {"am": alerts}, lambda site: SiteInfo(), db=db)
        incident = open_incident(store)
        with store.transaction():
            store.enqueue(incident, "am", "open", NOW)
        await drain(box)
        store.threads.clear()
        assert await Resender(lambda: box, Clock()).resend_due() == 1
        assert store.threads and all(t.startswith("storewatch-store") for t in store.threads), \
            store.threads
    finally:
        db.close()
        store.close()
