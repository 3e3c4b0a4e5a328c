"""Tracker faults end to end: the real incident engine on a real SQLite store queues the
tickets, the real outbox delivers them through the real sink adapters to their trackers (a
loopback webhook receiver; the SaaS trackers as respx fakes of their documented APIs), while the
tracker answers 500, 429 with Retry-After, 401, nothing in time, has no DNS name, or carries out
a create and then never answers (the duplicate trap).

Afterwards every incident has exactly one ticket at the tracker (none for a 401: dead letters),
and the outbox's figures (retries, dead letters) are the ones the fault must produce. The table
``EXPECTED`` is the one in the README's reliability section.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config.schema import Config
from agent.incidents.engine import IncidentEngine
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.sinks.base import SinkBuildContext
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.state.store import OutboxState, Store, db_path
from classifier import Evidence, Finding, FindingKind
from tests.agent.sinks.harness import (
    HTTP_SINKS,
    OPENED,
    SEARCHABLE,
    Fail,
    Harness,
    build_sink,
    config,
    harness,
)

RETRY_AFTER = 7


@dataclass(frozen=True)
class Figures:
    """What one fault must leave behind for one incident (open, then resolve)."""

    tickets: int
    """Tickets at the tracker afterwards (each resolved)."""
    retries: int
    dead: int


EXPECTED: dict[str, Figures] = {
    "500": Figures(tickets=1, retries=2, dead=0),  # two 500s, then the tracker recovers
    "timeout": Figures(tickets=1, retries=1, dead=0),
    "429": Figures(tickets=1, retries=1, dead=0),  # Retry-After: 7 honoured
    "401": Figures(tickets=0, retries=0, dead=2),  # open and resolve are dead letters
    "dns": Figures(tickets=1, retries=3, dead=0),  # .invalid host three times, then fixed
    "duplicate-trap": Figures(tickets=1, retries=1, dead=0),
}


class Engine:
    """The incident engine on a real store, fed observations of one failing check."""

    def __init__(self, state_dir: Path, sink: str, sink_config: dict[str, Any]) -> None:
        self.config = Config.model_validate({
            "agent": {"state_dir": str(state_dir)},
            "incidents": {"confirm_l1": 1, "recover": 1},
            "sinks": {sink: sink_config},
            "sites": [{"name": "shop", "base_url": "http://shop.test",
                       "checks": [{"name": "home", "path": "/"}]}]})
        self.store = Store(db_path(state_dir))
        self.engine = IncidentEngine(self.store, self.config)
        self.classifier = Classifier(self.config)
        self.now = OPENED

    def run(self, failing: bool) -> None:
        findings = (Finding("shop", "home", FindingKind.SITE_DOWN, "home answers HTTP 503",
                            self.now, Evidence(url="http://shop.test/", status=503)),
                    ) if failing else ()
        result = ProbeResult("shop", "home", not findings, 0.1, self.now, findings=findings)
        obs: Observation = self.classifier.observe(result)
        self.engine.handle(obs, now=self.now)
        self.now += timedelta(minutes=1)


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for e in made:
        e.store.close()


class Delivery:
    """The real outbox over one sink, counting outcomes like the daemon's metric does."""

    def __init__(self, store: Store, name: str) -> None:
        self.outcomes: list[str] = []
        self.box = Outbox(store, {}, lambda site: SiteInfo(), base_delay=0.01,
                          max_delay=10, rng=random.Random(7),
                          on_attempt=lambda s, action, outcome: self.outcomes.append(outcome))

    async def attempt(self, later: float = 0.0) -> int:
        """One delivery pass, ``later`` seconds in the future (past any backoff)."""
        return await self.box.deliver_due(datetime.now(UTC) + timedelta(seconds=later))

    async def drain(self) -> None:
        for _ in range(20):
            await self.attempt(later=RETRY_AFTER + 60)
            if not self.box.store.outbox(OutboxState.PENDING):
                return
        raise AssertionError("the outbox never drained")


async def unresolvable(delivery: Delivery, sink: str, ctx: SinkBuildContext) -> None:
    """Three attempts at a tracker whose host name does not resolve (real DNS, ``.invalid``)."""
    delivery.box.sinks[ctx.name] = build_sink(sink, config(sink, "https://tracker.invalid"), ctx)
    for i in range(3):
        await delivery.attempt(later=i)
    (entry,) = delivery.box.store.outbox(OutboxState.PENDING)
    assert "DNS lookup failed" in (entry.last_error or ""), entry.last_error


async def inject(fault: str, h: Harness, delivery: Delivery) -> None:
    """Make the first open attempts meet ``fault``; the tracker works afterwards."""
    store = delivery.box.store
    if fault == "500":
        h.fail_next(Fail(500))
        h.fail_next(Fail(500))
        await delivery.attempt()
        await delivery.attempt(later=1)
    elif fault == "timeout":
        h.fail_next(Fail(None))
        await delivery.attempt()
    elif fault == "429":
        h.fail_next(Fail(429, {"Retry-After": str(RETRY_AFTER)}))
        before = datetime.now(UTC)
        await delivery.attempt()
        (entry,) = store.outbox(OutboxState.PENDING)
        assert entry.next_at >= before + timedelta(seconds=RETRY_AFTER)
        assert await delivery.attempt(later=RETRY_AFTER - 1) == 0  # not before Retry-After
    elif fault == "401":
        h.fail_next(Fail(401))
        await delivery.attempt()
    elif fault == "duplicate-trap":
        h.fail_next(Fail(None, accept=True))
        await delivery.attempt()
        assert len(h.tickets()) == 1  # the tracker has it; we do not know
        assert store.tickets() == []
    else:
        assert fault == "dns"  # done before the tracker came up: see unresolvable()


@pytest.mark.parametrize("fault", list(EXPECTED))
@pytest.mark.parametrize("sink", HTTP_SINKS)
async def test_every_incident_gets_exactly_the_tickets_the_fault_allows(
        sink: str, fault: str, http: httpx.AsyncClient, tmp_path: Path,
        engine_factory: list[Engine]) -> None:
    name = f"{sink}-main"
    ctx = SinkBuildContext(name=name, http_factory=lambda: http, state_dir=tmp_path,
                           user_agent="storewatch-test")
    engine = Engine(tmp_path, name, config(sink, "https://tracker.example"))
    engine_factory.append(engine)
    delivery = Delivery(engine.store, name)
    engine.run(failing=True)
    assert [e.action for e in engine.store.outbox()] == ["open"]
    if fault == "dns":  # outside the respx fakes: the lookup is real
        await unresolvable(delivery, sink, ctx)
    async with AsyncExitStack() as stack:
        h = await stack.enter_async_context(harness(sink, http, tmp_path))
        delivery.box.sinks[name] = h.build()
        await inject(fault, h, delivery)
        engine.run(failing=False)  # recovered: the resolve is queued behind the open
        await delivery.drain()

        expected = EXPECTED[fault]
        figures = Figures(tickets=len(h.tickets()), retries=delivery.outcomes.count("retry"),
                          dead=delivery.outcomes.count("dead"))
        assert figures == expected
        store = engine.store
        assert len(store.outbox(OutboxState.DEAD)) == expected.dead
        assert sum(e.attempts for e in store.outbox()) == expected.retries + expected.dead
        incidents = store.conn.execute("SELECT id FROM incidents").fetchall()
        assert len(incidents) == 1
        recorded = store.tickets()
        assert len(recorded) == expected.tickets  # one ticket per incident, or none (dead)
        if expected.tickets:
            assert set(h.tickets().values()) == {"resolved"}
            assert recorded[0].external_id in h.tickets()
        if fault == "duplicate-trap" and sink == "webhook":
            # not searchable: "opened" went out twice with the same webhook-id and
            # incident_key; the receiver's dedup (by event id) keeps one
            assert len(h.requests()) == 3  # opened (trap), opened (again), resolved
        if fault == "duplicate-trap" and sink not in SEARCHABLE:
            assert len(h.tickets()) == 1  # same dedup key / label set: the same ticket
