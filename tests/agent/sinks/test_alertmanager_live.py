"""A real Alertmanager (Debian ``prometheus-alertmanager``) on loopback keeps an open incident's
alert active while the agent daemon runs, loses it on resolve, and resolves it on its own once
the agent is killed and ``endsAt`` has passed.

Skipped locally without the binary; in CI (CI=true) a missing binary fails (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.demo.storefront import DemoStore
from tests.agent.servers import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

RESEND = 1.5
"""The sink's resend_interval in seconds: endsAt is 4 of them ahead of each (re-)send."""


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("alertmanager is missing in CI: .ci/run installs prometheus-alertmanager")
    pytest.skip("alertmanager not installed (Debian package prometheus-alertmanager; .ci/run "
                "installs it)")


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    """Alertmanager on a free loopback port, its own storage, clustering off; stopped by PID."""
    binary = alertmanager_binary()
    port = await free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n")
    storage = tmp_path / "am-data"
    storage.mkdir()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={storage}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: _ready(client, base, proc), 30, "alertmanager ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _ready(client: httpx.AsyncClient, base: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"alertmanager exited with {proc.returncode}")
    try:
        return (await client.get(base + "/-/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def wait_for(condition: Callable[[], Coroutine[Any, Any, bool]], timeout: float,
                   what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.2)


async def active_alerts(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    """Alerts Alertmanager holds as firing (API v2 leaves out those past their endsAt)."""
    r = await client.get(base + "/api/v2/alerts", params={"filter": 'alertname="SwLive"'})
    r.raise_for_status()
    alerts: list[dict[str, Any]] = r.json()
    return [a for a in alerts if a["status"]["state"] == "active"]


def ends_at(alert: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


async def test_open_incident_stays_active_until_resolved_or_agent_dies(
        alertmanager: str, store: DemoStore, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
agent: {{listen: "127.0.0.1:0", state_dir: "{tmp_path / 'state'}", jitter: 0}}
defaults: {{interval: 0.5s, timeout: 0.4s}}
sites:
  - name: demo
    base_url: {store.url}
    checks: [{{name: home, type: availability, path: /}}]
sinks:
  am: {{type: alertmanager, urls: ["{alertmanager}"], alertname: SwLive,
        resend_interval: {RESEND}s}}
routing: [{{sinks: [am]}}]
incidents: {{confirm_l1: 2, recover: 2, reference_targets: []}}
""")
    log = tmp_path / "agent.log"
    store.set_faults(["server_error"])
    agent = start_agent(config, log)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            async def firing() -> bool:
                assert agent.poll() is None, log.read_text()
                return len(await active_alerts(client, alertmanager)) == 1

            await wait_for(firing, 60, "the L1 incident's alert")
            first = (await active_alerts(client, alertmanager))[0]
            assert first["labels"]["site"] == "demo" and first["labels"]["severity"] == "critical"

            # without re-sends the alert would end 4 intervals after the first send
            await asyncio.sleep(6 * RESEND + 1)
            still = await active_alerts(client, alertmanager)
            assert len(still) == 1, log.read_text()
            assert ends_at(still[0]) > ends_at(first), "endsAt was not pushed by a re-send"

            store.set_faults([])

            async def gone() -> bool:
                return await active_alerts(client, alertmanager) == []

            await wait_for(gone, 60, "the alert to end after the incident resolved")
            text = log.read_text()
            assert "incident #1 opened" in text

            # again; this time the agent dies with the incident open
            store.set_faults(["server_error"])
            await wait_for(firing, 60, "the second incident's alert")
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
            held = await active_alerts(client, alertmanager)
            assert len(held) == 1  # nobody resolved it: it is still firing
            deadline = ends_at(held[0])
            await wait_for(gone, 8 * RESEND + 30, "Alertmanager to resolve after endsAt")
            assert datetime.now(deadline.tzinfo) >= deadline
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(timeout=10)
