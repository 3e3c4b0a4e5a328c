"""The daemon's incident side keeps working whatever goes wrong inside it: a sink that cannot be
built when the store reopens, a bug in the engine, more observations than it can take, and a
database locked by another process (the event loop, and so every probe, keeps its schedule)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import agent.incidents.service
from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.errors import StateError
from agent.httpclient import HttpClients
from agent.incidents.engine import IncidentEngine
from agent.incidents.service import IncidentService
from agent.metrics.incidents import IncidentMetrics
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.service import Agent
from agent.state.health import StateHealth
from agent.state.store import db_path
from classifier import Evidence, Finding, FindingKind
from tests.agent.test_incidents_e2e import wait_for


def make_config(state: Path, **agent: Any) -> Config:
    return Config.model_validate({
        "agent": {"state_dir": str(state), **agent},
        "incidents": {"confirm_l1": 1, "confirm": 1, "recover": 1},
        "sites": [{"name": "shop", "base_url": "http://shop.test",
                   "checks": [{"name": f"page-{i}", "path": f"/{i}"} for i in range(3)]}]})


def observation(config: Config, check: str, kind: FindingKind | None) -> Observation:
    now = datetime.now(UTC)
    findings = () if kind is None else (
        Finding("shop", check, kind, f"{kind.value} on {check}", now,
                Evidence(url=f"http://shop.test/{check}", status=503)),)
    return Classifier(config).observe(ProbeResult("shop", check, not findings, 0.1, now,
                                                  findings=findings))


def incidents(state: Path) -> list[tuple[str, str]]:
    db = db_path(state)
    if not db.is_file():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT check_name, kind FROM incidents")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.config = make_config(self.state)
        self.registry = CollectorRegistry()
        self.clients = HttpClients("storewatch-test")
        self.metrics = IncidentMetrics(self.registry, db_path(self.state))
        self.service: IncidentService | None = None

    def start(self) -> IncidentService:
        self.service = IncidentService(self.config, self.clients, self.metrics,
                                       StateHealth(self.registry))
        self.service.guard.targets = ()  # always online, no network
        return self.service

    def sample(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    if h.service is not None:
        await h.service.stop()
    await h.clients.aclose()


def assert_consumer_alive(service: IncidentService) -> None:
    (task,) = [t for t in service._tasks if t.get_name() == "incident-engine"]
    assert not task.done(), f"the incident consumer died: {task.exception()!r}"


async def test_the_consumer_survives_a_sink_build_failing_on_reopen(
        harness: Harness, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(agent.incidents.service, "REOPEN_SECONDS", 0.0)
    harness.state.write_text("a regular file where the state directory should be\n")
    service = harness.start()
    service.start()
    service.submit(observation(harness.config, "page-0", FindingKind.SITE_DOWN))
    await wait_for("the observation to be tried", lambda: service._queue.empty(), 10)
    assert incidents(harness.state) == []  # not saved: there is no store
    harness.state.unlink()  # the state directory can be made now ...
    failures = [StateError("cannot open the incident store: database is locked")]
    real = agent.incidents.service.build_sink

    def flaky(*args: Any) -> Any:  # ... but the sink fails to build on the first reopen
        if failures:
            raise failures.pop()
        return real(*args)

    monkeypatch.setattr(agent.incidents.service, "build_sink", flaky)
    caplog.set_level(logging.INFO, logger="agent")
    service.submit(observation(harness.config, "page-0", FindingKind.SITE_DOWN))
    await wait_for("the failed reopen", lambda: not failures and service._queue.empty(), 10)
    assert_consumer_alive(service)
    for i in range(1, 3):  # observations keep being handled
        service.submit(observation(harness.config, f"page-{i}", FindingKind.SITE_DOWN))
    found = await wait_for("an incident from the later observations",
                           lambda: incidents(harness.state), 20)
    # the first page-0 run was kept while the store could not be opened, and saved first
    assert found == [("page-0", "site_down")]  # one incident per (site, kind)
    errors = [r for r in caplog.records
              if r.levelno >= logging.ERROR and r.name == "agent.incidents.service"]
    assert [r.getMessage() for r in errors] == [
        "cannot build the ticket sinks; retrying with backoff"]
    assert errors[0].exc_info is not None  # logged once, with what failed
    assert harness.sample("storewatch_incident_errors_total") == 1.0
    assert any("incident handling works again" in r.getMessage() for r in caplog.records)


async def test_an_engine_bug_is_logged_once_counted_and_the_observation_retried(
        harness: Harness, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(agent.incidents.service, "RETRY_BASE_SECONDS", 0.01, raising=False)
    real = IncidentEngine.handle
    bugs = [RuntimeError("bug"), KeyError("bug")]

    def buggy(self: IncidentEngine, *args: Any, **kwargs: Any) -> None:
        if bugs:
            raise bugs.pop()
        real(self, *args, **kwargs)

    monkeypatch.setattr(IncidentEngine, "handle", buggy)
    service = harness.start()
    service.start()
    service.submit(observation(harness.config, "page-0", FindingKind.CHECKOUT_BROKEN))
    await wait_for("the one observation, saved on its third try",
                   lambda: incidents(harness.state), 20)
    assert_consumer_alive(service)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["incident engine failed on shop/page-0; retrying with backoff"]
    assert harness.sample("storewatch_incident_errors_total") == 2.0


async def test_a_full_queue_drops_the_oldest_non_l1_observation_never_an_l1(
        harness: Harness) -> None:
    service = harness.start()  # not started: nothing consumes the queue
    l1 = [observation(harness.config, "page-0", FindingKind.SITE_DOWN) for _ in range(3)]
    l3 = [observation(harness.config, "page-1", FindingKind.SEARCH_BROKEN) for _ in range(5)]
    ok = [observation(harness.config, "page-2", None) for _ in range(5)]
    small = IncidentService(harness.config, harness.clients, harness.metrics, queue_size=4)
    try:
        for obs in (ok[0], l1[0], l3[0], l1[1], ok[1], l1[2], l3[1], l3[2], ok[2]):
            small.submit(obs)
        queued = [small._queue.get() for _ in range(len(small._queue))]
        kept = [await q for q in queued]
        assert kept == [l1[0], l1[1], l1[2], ok[2]]  # every L1 kept, in order
        assert harness.sample("storewatch_incident_queue_dropped_total") == 5.0
        for _ in range(8):  # all L1: the queue grows past its bound rather than drop one
            small.submit(l1[0])
        assert len(small._queue) == 8
        assert harness.sample("storewatch_incident_queue_dropped_total") == 5.0
    finally:
        await small.stop()
    assert service._queue.maxsize == 1000


class WriteLock:
    """Another process's write transaction on the store (like `storewatch silence add`
    holding the lock), for ``seconds``."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.db, self.seconds = db, seconds
        self.held = threading.Event()
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.held.set()
            time.sleep(self.seconds)
            conn.execute("COMMIT")
        finally:
            conn.close()
            self.released.set()


@pytest.mark.slow
async def test_a_store_locked_for_8s_does_not_stop_probes_or_the_loop(
        store: DemoStore, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "state_dir": str(state), "jitter": 0},
        "incidents": {"confirm_l1": 1, "confirm": 1, "recover": 1},
        "sites": [{"name": "shop", "base_url": store.url, "interval": "0.5s",
                   "timeout": "0.4s", "checks": [{"name": "home"}]}]})
    seen: list[float] = []
    running = Agent("test.yaml", config, on_observation=lambda obs: seen.append(time.monotonic()))
    running.incidents.guard.targets = ()
    serve = asyncio.create_task(running.serve())
    store.set_faults(["server_error"])  # every run has a finding: the engine writes each time
    try:
        await wait_for("the first incident", lambda: incidents(state), 20)
        lock = WriteLock(db_path(state), 8.0)
        lock.thread.start()
        assert await asyncio.to_thread(lock.held.wait, 10)
        held_at = time.monotonic()
        gaps: list[float] = []
        last = time.monotonic()
        while not lock.released.is_set():  # the loop keeps turning while the lock is held
            await asyncio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        released_at = time.monotonic()
        during = [t for t in seen if held_at <= t <= released_at]
        print(f"runs during the 8s lock: {len(during)} (16 due); longest loop stall "
              f"{max(gaps):.3f}s")
        assert len(during) >= 8  # half of the 16 due runs at least, on a loaded machine
        assert max(gaps) < 4.0  # never blocked for the lock's duration
        store.set_faults([])
        await wait_for("the incident resolved once the lock is gone", lambda: [
            r for r in _states(state) if r == "resolved"], 30)
    finally:
        running.stop()
        await serve


def _states(state: Path) -> list[str]:
    conn = sqlite3.connect(db_path(state), timeout=10)
    try:
        return [r[0] for r in conn.execute("SELECT state FROM incidents")]
    finally:
        conn.close()

