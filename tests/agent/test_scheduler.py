"""Scheduler: non-overlap, global concurrency, deadlines, and healthy checks kept on time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from agent.config.schema import Config, PlannedCheck
from agent.demo.storefront import DemoStore, start_store
from agent.httpclient import HttpClients
from agent.metrics.collectors import AgentMetrics
from agent.pipeline import Classifier, LatestResults, Observation
from agent.probes.base import ProbeContext, run_guarded
from agent.scheduler import CheckRunner, CheckScheduler, _trigger, start_offset
from classifier import FindingKind
from tests.agent.servers import serve


class CountingRunner(CheckRunner):
    """The real runner, recording how many runs of each check are in flight at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight: Counter[str] = Counter()
        self.max_inflight: Counter[str] = Counter()
        self.total_inflight = 0
        self.max_total = 0
        self.finished: Counter[str] = Counter()

    async def run(self, planned: PlannedCheck, scheduled_at: float | None = None) -> Observation:
        key = planned.key
        self.inflight[key] += 1
        self.total_inflight += 1
        self.max_inflight[key] = max(self.max_inflight[key], self.inflight[key])
        self.max_total = max(self.max_total, self.total_inflight)
        try:
            return await super().run(planned, scheduled_at)
        finally:
            self.inflight[key] -= 1
            self.total_inflight -= 1
            self.finished[key] += 1


def config(sites: list[dict[str, Any]], concurrency: int = 50) -> Config:
    return Config.model_validate({"agent": {"concurrency": concurrency, "jitter": 0},
                                  "sites": sites})


def site(name: str, url: str, checks: int = 1, interval: str = "1s",
         timeout: str = "0.9s") -> dict[str, Any]:
    return {"name": name, "base_url": url, "interval": interval, "timeout": timeout,
            "checks": [{"name": f"c{i}", "type": "availability"} for i in range(checks)]}


async def run_until(cfg: Config, done: Callable[[CountingRunner], bool],
                    timeout: float = 60.0) -> tuple[CountingRunner, AgentMetrics]:
    """Run the real scheduler until ``done(runner)`` holds (a condition, not a duration)."""
    latest = LatestResults()
    metrics = AgentMetrics(latest)
    clients = HttpClients("storewatch-test")
    runner = CountingRunner(clients, Classifier(cfg), latest, metrics, cfg.agent.concurrency)
    scheduler = CheckScheduler(runner, spread_first_runs=False)
    scheduler.apply(cfg)
    scheduler.start()
    try:
        async with asyncio.timeout(timeout):
            while not done(runner):
                await asyncio.sleep(0.02)
    finally:
        await scheduler.shutdown(drain_s=0.1)
        await clients.aclose()
    return runner, metrics


def sample(metrics: AgentMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


async def test_a_hung_check_never_overlaps_itself(store: DemoStore) -> None:
    store.set_faults(["down"])  # every request hangs until the 0.9s timeout (+0.5s grace)
    runner, metrics = await run_until(config([site("shop", store.url)]),
                                      lambda r: r.finished["shop/c0"] >= 3)
    assert runner.max_inflight["shop/c0"] == 1
    assert runner.finished["shop/c0"] >= 2
    assert sample(metrics, "storewatch_probe_runs_total",
                  {"site": "shop", "check": "c0", "outcome": "failure"}) >= 2


async def test_global_concurrency_limit_holds() -> None:
    inflight = 0
    peak = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        try:
            await asyncio.sleep(0.4)
            return web.Response(text="ok")
        finally:
            inflight -= 1

    async with serve({"/": slow}) as url:
        runner, _ = await run_until(config([site("shop", url, checks=6)], concurrency=2),
                                    lambda r: sum(r.finished.values()) >= 6)
    assert peak == 2  # six checks due at once, never more than two probes in flight
    assert runner.max_total >= 3  # the others waited for a slot
    assert sum(runner.finished.values()) >= 6


async def test_hung_site_does_not_delay_a_healthy_one(store: DemoStore) -> None:
    bad = await start_store("127.0.0.1", 0, faults=["down"])
    try:
        cfg = config([site("bad", bad.url, checks=5), site("good", store.url)])
        runner, metrics = await run_until(cfg, lambda r: r.finished["good/c0"] >= 4)
    finally:
        await bad.close()
    # the healthy check kept running (and succeeding) beside five failing ones
    assert runner.max_inflight["good/c0"] == 1
    assert sample(metrics, "storewatch_probe_runs_total",
                  {"site": "good", "check": "c0", "outcome": "success"}) >= 4
    assert sample(metrics, "storewatch_scheduler_lateness_seconds_count") >= 4


async def test_deadline_cancels_a_probe_that_ignores_its_timeout(store: DemoStore) -> None:
    cfg = config([site("shop", store.url, interval="5s", timeout="0.2s")])
    cancelled = asyncio.Event()

    async def stubborn(spec: Any, ctx: ProbeContext) -> Any:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    result = await asyncio.wait_for(run_guarded(stubborn, cfg.sites[0].checks[0], ProbeContext(
        HttpClients("t"), cfg.sites[0], 0.2)), 30)  # not the probe's 60s
    assert cancelled.is_set()
    (finding,) = result.findings
    assert finding.kind is FindingKind.SITE_DOWN
    assert finding.evidence.details["failure"] == "deadline"
    assert "deadline" in finding.summary


async def test_a_crashing_probe_becomes_a_finding(store: DemoStore) -> None:
    cfg = config([site("shop", store.url)])

    async def broken(spec: Any, ctx: ProbeContext) -> Any:
        raise KeyError("bug")

    result = await run_guarded(broken, cfg.sites[0].checks[0], ProbeContext(
        HttpClients("t"), cfg.sites[0], 1.0))
    assert result.findings[0].evidence.details["failure"] == "probe_error"
    assert result.findings[0].summary == "probe error: KeyError"


def test_start_offsets_are_stable_and_spread() -> None:
    offsets = [start_offset(f"site{i}/home", 60.0) for i in range(200)]
    assert offsets == [start_offset(f"site{i}/home", 60.0) for i in range(200)]
    assert all(0 <= o < 60 for o in offsets)
    assert min(offsets) < 10 and max(offsets) > 50


async def test_reload_reschedules_only_what_changed(store: DemoStore) -> None:
    cfg = config([site("shop", store.url, checks=2)])
    latest = LatestResults()
    runner = CheckRunner(HttpClients("t"), Classifier(cfg), latest, None, 10)
    scheduler = CheckScheduler(runner)
    scheduler.apply(cfg)
    jobs = {j.id: j for j in scheduler._scheduler.get_jobs()}
    assert set(jobs) == {"shop/c0", "shop/c1"}
    smaller = config([site("shop", store.url, checks=1)])
    scheduler.apply(smaller)
    assert {j.id for j in scheduler._scheduler.get_jobs()} == {"shop/c0"}
    await runner.clients.aclose()


@pytest.mark.parametrize(("interval", "jitter"), [(10.0, 0.1), (0.3, 0.0), (0.3, 0.5),
                                                  (1 / 3, 0.0)])
def test_jittered_runs_stay_on_their_grid_and_do_not_drift(interval: float,
                                                          jitter: float) -> None:
    """Each run is due in [start + k x interval, … + jitter x interval]: the random delays do not
    add up (APScheduler's own trigger drifts by jitter / 2 per run: 5 % fewer runs at 0.1), and
    without jitter every run is one interval after the last (never the same time again, which
    would make APScheduler loop on a late job)."""
    start = datetime(2026, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)
    trigger = _trigger(interval, start, jitter)
    fire: datetime | None = None
    for k in range(3000):
        fire = trigger.get_next_fire_time(fire, start)
        assert fire is not None
        offset = (fire - start).total_seconds() - trigger.interval_length * k  # 1 µs steps
        assert -1e-5 <= offset <= interval * jitter + 1e-5, (k, offset)
