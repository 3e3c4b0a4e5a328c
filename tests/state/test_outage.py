"""The PostgreSQL server goes away under a running agent (`storewatch run` as a subprocess) and
comes back: probing and /metrics go on, ``storewatch_state_writable`` says 0 and
``storewatch_incident_queue_length`` shows the observations waiting; once the server is back
the agent catches up (the failure seen during the outage becomes an incident, at the time it was
seen, and gets its ticket) and the password never shows in the log or /metrics."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

import agent.incidents.service
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.incidents.service import IncidentService
from agent.metrics.incidents import IncidentMetrics
from agent.state.health import StateHealth
from classifier import FindingKind
from tests.agent.test_incident_service import make_config, observation
from tests.agent.test_incidents_e2e import Daemon, daemon, wait_for, write_config
from tests.agent.test_metrics import parse
from tests.pgcluster import PostgresCluster

__all__ = ["daemon"]

SECRET = "Pw-canary-2c81f7e4"
NOT_SAVED = "state is not being saved"


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A server of this test's own (it is stopped and started again)."""
    with PostgresCluster(user="storewatch", database="storewatch") as pg:
        yield pg


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(sql.encode()).fetchall()
    except psycopg.Error:  # schema not there yet, or the server is down
        return []


async def test_the_server_stopped_and_started_under_a_running_agent(
        store: DemoStore, tmp_path: Path, daemon: Callable[[Path], Daemon],
        cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pgpass").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    url = cluster.url(password="${cred:pgpass}")
    config = write_config(tmp_path, store.url, interval=0.3, extra="""\
        incidents:
          confirm_l1: 1
          confirm: 1
          recover: 1
        """)
    config.write_text(config.read_text().replace("  jitter: 0\n",
                                                 f'  jitter: 0\n  state: "{url}"\n'))
    plain = cluster.url()
    agent = daemon(config)
    await agent.start()
    log = tmp_path / "daemon.log"
    line = await wait_for("the running line", lambda: re.search(
        r"metrics at (http://\S+/metrics)", log.read_text()), 20)

    async def metric(name: str) -> list[tuple[dict[str, str], float]]:
        async with httpx.AsyncClient() as client:
            return parse((await client.get(line.group(1), timeout=10)).text).get(name, [])

    async def value(name: str) -> float:
        return sum(v for _, v in await metric(name))

    await wait_for("the schema", lambda: pg_rows(plain, "SELECT version FROM schema_version"),
                   20)
    assert await value("storewatch_state_writable") == 1.0

    cluster.pause()
    outage = datetime.now(UTC)
    store.set_faults(["server_error"])  # a failure to record while the database is away
    await wait_for("the not-saved line", lambda: NOT_SAVED in log.read_text(), 20)
    assert await value("storewatch_state_writable") == 0.0
    runs = await value("storewatch_probe_runs_total")
    for _ in range(300):  # observations pile up while probing goes on
        if await value("storewatch_incident_queue_length") >= 10:
            break
        await asyncio.sleep(0.1)
    assert await value("storewatch_incident_queue_length") >= 10
    assert await value("storewatch_probe_runs_total") > runs
    assert ({"site": "demo", "check": "home"}, 0.0) in await metric("storewatch_probe_success")
    assert await metric("storewatch_incident_collector_success") == [({}, 0.0)]
    assert pg_rows(plain, "SELECT 1") == []  # really down

    cluster.resume()
    await wait_for("the saved-again line", lambda: "saved again" in log.read_text(), 30)
    ticketed = await wait_for("the ticket of the failure seen during the outage", lambda: pg_rows(
        plain, "SELECT i.id, i.first_seen FROM incidents i JOIN tickets t ON "
        "t.incident_id = i.id WHERE i.check_name = 'home'"), 30)
    assert ticketed[0][1] < datetime.now(UTC).timestamp()
    assert ticketed[0][1] >= outage.timestamp() - 1  # counted when it was seen
    for _ in range(300):  # caught up: at most the run just handed over waits
        if (await value("storewatch_incident_queue_length") <= 1
                and await value("storewatch_state_writable") == 1.0):
            break
        await asyncio.sleep(0.1)
    assert await value("storewatch_incident_queue_length") <= 1
    assert await value("storewatch_state_writable") == 1.0
    assert await metric("storewatch_incident_collector_success") == [({}, 1.0)]
    async with httpx.AsyncClient() as client:
        assert SECRET not in (await client.get(line.group(1), timeout=10)).text

    await agent.kill(signal.SIGTERM)
    output = log.read_text()
    assert SECRET not in output
    assert len([x for x in output.splitlines() if NOT_SAVED in x]) == 1, output
    assert "Traceback" not in output, output
    assert f"postgresql://storewatch@127.0.0.1:{cluster.port}/storewatch" in output


async def test_a_server_down_at_start_is_reopened_and_the_waiting_runs_are_saved(
        tmp_path: Path, cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident service starts while PostgreSQL is down: nothing is lost, the runs wait
    (counted in the queue gauge), and once the server is up the store opens and they are saved
    in order."""
    monkeypatch.setattr(agent.incidents.service, "REOPEN_SECONDS", 0.2)
    cluster.pause()
    config = make_config(tmp_path / "state")
    config = config.model_copy(update={"agent": config.agent.model_copy(
        update={"state": cluster.url(password=SECRET)})})
    registry = CollectorRegistry()
    clients = HttpClients("storewatch-test")
    health = StateHealth(registry)
    metrics = IncidentMetrics(registry, config.agent.store_location, config.agent.state_dir)
    service = IncidentService(config, clients, metrics, health)
    service.guard.targets = ()
    service.start()
    try:
        assert not health.writable and SECRET not in (health.reason or "")
        assert "cannot connect to the incident store postgresql://storewatch@127.0.0.1" in (
            health.reason or "")
        for i in range(3):
            service.submit(observation(config, f"page-{i}", FindingKind.SLOW_RESPONSE))
        await wait_for("the runs waiting", lambda: registry.get_sample_value(
            "storewatch_incident_queue_length") == 3.0, 20)
        assert registry.get_sample_value("storewatch_state_writable") == 0.0
        cluster.resume()
        await wait_for("the waiting runs saved", lambda: len(pg_rows(
            cluster.url(), "SELECT id FROM incidents")) == 3, 30)
        assert [r[0] for r in pg_rows(cluster.url(), "SELECT check_name FROM incidents ORDER "
                                                     "BY id")] == ["page-0", "page-1", "page-2"]
        assert health.writable
        assert registry.get_sample_value("storewatch_incident_queue_length") == 0.0
    finally:
        await service.stop()
        metrics.close()
        await clients.aclose()
