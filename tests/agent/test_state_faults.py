"""The state directory fails: probing and /metrics go on, one clear log line, and
``storewatch_state_writable`` says state is not being saved.

* Unwritable from the start, for real: ``storewatch run`` as a subprocess whose state directory
  path is a regular file (works as root too, unlike chmod).
* A real full disk: the daemon's state directory on a 1 MiB ext2 image mounted on loopback
  (needs root and loop devices; skipped where they are missing), filled up while it runs.
* Disk full anywhere: the real incident service on a real SQLite file whose size limit
  (``PRAGMA max_page_count`` on each connection to it) is reached, so every write fails with
  SQLite's own "database or disk is full"; then space comes back and saving resumes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.incidents.service import IncidentService
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.state.health import StateHealth
from agent.state.store import OutboxState
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
    async with asyncio.timeout(30):  # probing goes on, findings reach /metrics
        while not (sum(v for _, v in samples(text, "storewatch_probe_runs_total"))
                   >= runs_before + 3 and ({"site": "demo", "check": "home"}, 0.0)
                   in samples(text, "storewatch_probe_success")):
            await asyncio.sleep(0.1)
            text = await scrape()
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
    opened = [r.getMessage() for r in caplog.records if " opened" in r.getMessage()]
    assert len(opened) == full_at  # page-0 … the last saved one; none for rolled-back runs
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


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB ext2 filesystem (no blocks reserved for root) mounted on loopback."""
    image, mountpoint = tmp_path / "disk.img", tmp_path / "disk"
    mountpoint.mkdir()
    with image.open("wb") as f:
        f.truncate(1024 * 1024)
    made = subprocess.run(["mkfs.ext2", "-q", "-F", "-m", "0", str(image)], capture_output=True,
                          check=False) if shutil.which("mkfs.ext2") else None
    mounted = made is not None and made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True,
        check=False).returncode == 0
    if not mounted:
        pytest.skip("needs root with loop mounts and mkfs.ext2 (a full disk is also tested "
                    "in-process above)")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def test_a_real_full_disk_keeps_the_daemon_probing_and_saving_resumes(
        store: DemoStore, tmp_path: Path, daemon: Callable[[Path], Daemon],
        tiny_disk: Path) -> None:
    config = write_config(tmp_path, store.url, interval=0.3, extra="""\
        incidents:
          confirm_l1: 1
          confirm: 1
          recover: 1
        """)
    config.write_text(config.read_text().replace(str(tmp_path / "state"),
                                                 str(tiny_disk / "state")))
    agent = daemon(config)
    await agent.start()
    log = tmp_path / "daemon.log"
    line = await wait_for("the running line", lambda: re.search(
        r"metrics at (http://\S+/metrics)", log.read_text()), 20)
    db = tiny_disk / "state" / "storewatch.db"
    await wait_for("the store", db.exists, 10)
    await asyncio.sleep(0.5)

    async def scrape() -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(line.group(1))).text

    filler = fill(tiny_disk)
    store.set_faults(["server_error"])  # incidents to save, on a full disk
    await wait_for("the not-saved line", lambda: NOT_SAVED in log.read_text(), 10)
    text = await scrape()
    assert samples(text, "storewatch_state_writable") == [({}, 0.0)]
    runs = sum(v for _, v in samples(text, "storewatch_probe_runs_total"))
    await asyncio.sleep(1.0)
    text = await scrape()
    assert sum(v for _, v in samples(text, "storewatch_probe_runs_total")) > runs
    assert ({"site": "demo", "check": "home"}, 0.0) in samples(text, "storewatch_probe_success")

    filler.unlink()  # space again: saving resumes by itself, the incident gets its ticket
    await wait_for("the saved-again line", lambda: "saved again" in log.read_text(), 10)
    await wait_for("the ticket", lambda: rows(db, "SELECT 1 FROM local_tickets"), 10)
    for _ in range(50):  # the gauge follows the next successful save
        writable = samples(await scrape(), "storewatch_state_writable")
        if writable == [({}, 1.0)]:
            break
        await asyncio.sleep(0.1)
    assert writable == [({}, 1.0)]
    await agent.kill(signal.SIGTERM)
    output = log.read_text()
    assert len([x for x in output.splitlines() if NOT_SAVED in x]) == 1, output
    assert "Traceback" not in output
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    # "opened" is logged once per incident that was saved, never for a rolled-back one
    logged = re.findall(r"incident #(\d+) opened", output)
    saved = rows(db, "SELECT id FROM incidents WHERE opened_at IS NOT NULL")
    assert sorted(map(int, logged)) == sorted(int(str(r[0])) for r in saved)
