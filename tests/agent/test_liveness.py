"""Checks that stop while the process lives on are noticed: no job fired for 3 x the shortest
interval → no systemd WATCHDOG ping, /healthz 503, ``storewatch_scheduler_stalled`` 1; all of it
recovers once jobs fire again. Also: the scheduler uses no private APScheduler API."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.pipeline import Classifier, LatestResults
from agent.scheduler import CheckRunner, CheckScheduler
from agent.service import Agent
from agent.systemd import Notifier
from tests.agent.test_incidents_e2e import wait_for


def config(url: str, interval: str = "0.3s", **agent: Any) -> Config:
    return Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, **agent},
        "sites": [{"name": "shop", "base_url": url, "interval": interval, "timeout": "0.25s",
                   "checks": [{"name": "home"}]}]})


async def test_stalled_is_three_shortest_intervals_without_a_fired_job(tmp_path: Path) -> None:
    now = [1000.0]
    clients = HttpClients("storewatch-test")
    cfg = config("http://127.0.0.1:9", interval="10s", state_dir=str(tmp_path))
    runner = CheckRunner(clients, Classifier(cfg), LatestResults(), None, 4)
    scheduler = CheckScheduler(runner, clock=lambda: now[0])
    assert not scheduler.stalled()  # not started: nothing is expected to fire
    scheduler.apply(cfg)
    scheduler.start()
    try:
        now[0] += 30.0
        assert not scheduler.stalled()
        now[0] += 0.5
        assert scheduler.stalled()
        (family, *_) = scheduler.collector().collect()
        assert (family.name, family.samples[0].value) == ("storewatch_scheduler_stalled", 1.0)
    finally:
        await scheduler.shutdown(0.1)
        await clients.aclose()


def test_the_scheduler_is_stock_apscheduler() -> None:
    scheduler = CheckScheduler.__new__(CheckScheduler)
    CheckScheduler.__init__(scheduler, None)  # type: ignore[arg-type]
    assert type(scheduler._scheduler) is AsyncIOScheduler  # no private-API override to break


class Notify:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        """Every message received so far."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def pings(self) -> int:
        return sum("WATCHDOG=1" in m for m in self.drain())


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[Notify]:
    short = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))  # sun_path is ~108 bytes
    n = Notify(short / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(n.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s while alive
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield n
    finally:
        n.sock.close()
        shutil.rmtree(short)


@pytest.fixture
async def daemon(store: DemoStore, tmp_path: Path, notify: Notify) -> AsyncIterator[Agent]:
    running = Agent("test.yaml", config(store.url, state_dir=str(tmp_path / "state")))
    task = asyncio.create_task(running.serve())
    try:
        yield running
    finally:
        running.stop()
        await task


async def healthz(daemon: Agent) -> int:
    async with httpx.AsyncClient() as client:
        url = daemon.metrics_url.removesuffix("/metrics") + "/healthz"
        return (await client.get(url)).status_code


async def test_a_stalled_scheduler_stops_the_watchdog_and_fails_healthz(
        daemon: Agent, notify: Notify) -> None:
    await wait_for("runs", lambda: daemon.latest.snapshot(), 20)
    await wait_for("a watchdog ping", notify.pings, 20)
    assert await healthz(daemon) == 200
    daemon.scheduler._scheduler.pause()  # the scheduler stops firing; everything else runs
    deadline = asyncio.get_running_loop().time() + 30
    while await healthz(daemon) != 503:
        notify.drain()
        assert asyncio.get_running_loop().time() < deadline, "/healthz never said 503"
        await asyncio.sleep(0.05)
    assert daemon.metrics.registry.get_sample_value("storewatch_scheduler_stalled") == 1.0
    notify.drain()
    await asyncio.sleep(1.0)  # ten watchdog periods of the loop running on
    assert notify.pings() == 0
    daemon.scheduler._scheduler.resume()
    await wait_for("a watchdog ping again", notify.pings, 20)
    assert await healthz(daemon) == 200
    assert daemon.metrics.registry.get_sample_value("storewatch_scheduler_stalled") == 0.0


def test_a_backed_up_notify_socket_never_blocks_the_agent(notify: Notify) -> None:
    notifier = Notifier()  # the socket is never read: its queue (10 datagrams) fills up
    sender = threading.Thread(target=lambda: [notifier.send("WATCHDOG=1") for _ in range(50)],
                              daemon=True)
    sender.start()
    sender.join(30)
    assert not sender.is_alive()  # a blocking send would hang here, and the event loop with it
    assert 0 < len(notify.drain()) < 50
