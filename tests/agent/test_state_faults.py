"""The state directory fails: probing and /metrics go on, one clear log line, and
``storewatch_state_writable`` says state is not being saved.

* Unwritable from the start, for real: ``storewatch run`` as a subprocess whose state directory
  path is a regular file (works as root too, unlike chmod).
* Disk full while running: the real incident service on a real SQLite file whose size limit
  (``PRAGMA max_page_count`` on the service's own connection) is reached, so every write fails
  with SQLite's own "database or disk is full"; then space comes back and saving resumes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.incident_service import IncidentService
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.state_health import StateHealth
from agent.store import OutboxState
from classifier import Evidence, Finding, FindingKind
from tests.agent.test_incidents_e2e import Daemon, daemon, wait_for, write_config
from tests.agent.test_metrics import parse

__all__ = ["daemon"]  # the fixture, shared with the end-to-end tests

NOT_SAVED = "state is not being saved"


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return parse(text).get(name, [])


async def test_an_unusable_state_dir_keeps_probing_and_metrics_with_one_line(
        store: DemoStore, tmp_path: Path, daemon: Callable[[Path], Daemon]) -> None:
    (tmp_path / "state").write_text("a regular file where the state directory should be\n")
    config = write_config(tmp_path, store.url, interval=0.3)
    agent = daemon(config)
    await agent.start()
    log = tmp_path / "daemon.log"
    line = await wait_for("the running line", lambda: re.search(
        r"metrics at (http://\S+/metrics)", log.read_text()), 20)
    store.set_faults(["server_error"])

    async def scrape() -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(line.group(1))).text

    text = await scrape()
    assert samples(text, "storewatch_state_writable") == [({}, 0.0)]
    runs_before = sum(v for _, v in samples(text, "storewatch_probe_runs_total"))
    await asyncio.sleep(1.5)  # several intervals: probing goes on, findings reach /metrics
    text = await scrape()
    assert sum(v for _, v in samples(text, "storewatch_probe_runs_total")) > runs_before
    assert ({"site": "demo", "check": "home"}, 0.0) in samples(text, "storewatch_probe_success")
    assert samples(text, "storewatch_state_writable") == [({}, 0.0)]
    assert agent.proc is not None and agent.proc.returncode is None
    await agent.kill(signal.SIGTERM)
    assert agent.proc.returncode == 0
    output = log.read_text()
    lines = [x for x in output.splitlines() if NOT_SAVED in x]
    assert len(lines) == 1, lines
    assert str(tmp_path / "state") in lines[0]
    assert "Traceback" not in output
    assert (tmp_path / "state").is_file()  # nothing written around it


class Service:
    """The real incident service on a real store, fed observations of one site."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = Config.model_validate({
            "agent": {"state_dir": str(tmp_path / "state")},
            "incidents": {"confirm_l1": 1, "confirm": 1, "recover": 1},
            "sites": [{"name": "shop", "base_url": "http://shop.test",
                       "checks": [{"name": f"page-{i}", "path": f"/{i}"} for i in range(60)]}]})
        self.registry = CollectorRegistry()
        self.health = StateHealth(self.registry)
        self.clients = HttpClients("storewatch-test")
        self.service = IncidentService(self.config, self.clients, health=self.health)
        self.classifier = Classifier(self.config)
        self.now = datetime.now(UTC)

    async def run(self, check: str, failing: bool) -> bool:
        findings = (Finding("shop", check, FindingKind.PARTIAL_OUTAGE, "x" * 2000, self.now,
                            Evidence(url=f"http://shop.test/{check}", status=503,
                                     excerpt="y" * 2000)),) if failing else ()
        result = ProbeResult("shop", check, not findings, 0.1, self.now, findings=findings)
        obs: Observation = self.classifier.observe(result)
        self.now += timedelta(seconds=1)
        return await self.service.apply(obs)

    def gauge(self) -> float:
        text = generate_latest(self.registry).decode()
        ((_, value),) = samples(text, "storewatch_state_writable")
        return value


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    s = Service(tmp_path)
    s.service.guard.targets = ()  # no reference targets: always online, no network
    yield s
    await s.service.stop()
    await s.clients.aclose()


async def test_a_full_disk_stops_saving_with_one_line_then_saving_resumes(
        service: Service, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert await service.run("page-0", failing=True)
    assert service.gauge() == 1.0
    conn = service.service.store.conn
    # the limit is per connection: the service's and the sqlite sink's own (the whole "disk")
    connections = [conn, service.service.outbox.sinks["sqlite"]._conn]  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    for c in connections:
        c.execute(f"PRAGMA max_page_count = {pages + 1}")
    results = [await service.run(f"page-{i}", failing=True) for i in range(1, 40)]
    assert False in results, "the store never filled up"
    full_at = results.index(False) + 1
    assert all(not r for r in results[full_at - 1:])  # nothing is saved once full
    assert service.gauge() == 0.0 and not service.health.writable
    assert "database or disk is full" in (service.health.reason or "")
    # the outbox meets the full store too (delivering needs writes): still the one line
    outbox = service.service.outbox
    assert outbox.store.outbox(OutboxState.PENDING)
    stop = asyncio.Event()
    worker = asyncio.create_task(outbox.run(stop, poll=0.02))
    await asyncio.sleep(0.3)  # many passes, each failing to record a delivery
    stop.set()
    await worker
    assert outbox.store.outbox(OutboxState.PENDING)
    errors = [r.getMessage() for r in caplog.records if NOT_SAVED in r.getMessage()]
    assert len(errors) == 1, errors
    assert all(r.levelno < logging.ERROR or NOT_SAVED in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]

    for c in connections:
        c.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert await service.run(f"page-{full_at}", failing=True)
    assert service.gauge() == 1.0 and service.health.writable
    assert [r.getMessage() for r in caplog.records
            if "state is being saved again" in r.getMessage()] != []
    # saved incidents and their tickets are whole: each open one has its ticket
    await outbox.deliver_due(datetime.now(UTC) + timedelta(hours=1))
    store = service.service.store
    open_ids = {r["id"] for r in conn.execute("SELECT id FROM incidents WHERE state = 'open'")}
    assert open_ids and {t.incident_id for t in store.tickets()} == open_ids
    assert store.outbox(OutboxState.PENDING) == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
