"""Goal 2, one step of the ramp in its own process: ``python -m bench.scale_worker N URLS``.

Schedules N availability checks at a 30 s interval with the agent's real scheduler stack
(CheckScheduler on APScheduler → CheckRunner → probe → classifier → metrics), first runs spread
over the interval as in production, against the nginx target (sites spread over its ports).
After ``--warmup`` seconds it records, for ``--window`` seconds, every run's lateness
(scheduled fire time to probe start), the probes completed, CPU (``time.process_time``) and
RSS. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from typing import Any

from agent.config.schema import Config, PlannedCheck
from agent.httpclient import HttpClients
from agent.metrics.collectors import AgentMetrics
from agent.pipeline import Classifier, LatestResults, Observation
from agent.scheduler import CheckRunner, CheckScheduler

CHECKS_PER_SITE = 10
MARKER = "storewatch bench"


class _Lateness:
    """Stands in for the agent's lateness histogram: keeps each exact value, then forwards.

    The runner observes lateness after it got its concurrency slot, so queueing counts.
    """

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.recording = False
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        if self.recording:
            self.values.append(value)
        self.histogram.observe(value)


class _Recorder(CheckRunner):
    """The agent's runner, also counting runs finished while recording."""

    recording = False
    finished = 0

    async def run(self, planned: PlannedCheck, scheduled_at: float | None = None) -> Observation:
        obs = await super().run(planned, scheduled_at)
        if self.recording:
            self.finished += 1
        return obs


def _config(n: int, urls: list[str], interval: float) -> Config:
    sites = []
    for s in range((n + CHECKS_PER_SITE - 1) // CHECKS_PER_SITE):
        k = min(CHECKS_PER_SITE, n - s * CHECKS_PER_SITE)
        sites.append({"name": f"shop{s}", "base_url": urls[s % len(urls)], "checks": [
            {"name": f"page{j}", "type": "availability", "path": f"/?p={j}",
             "body_contains": [MARKER]} for j in range(k)]})
    return Config.model_validate({"agent": {"concurrency": 500, "listen": "127.0.0.1:0"},
                                  "defaults": {"interval": f"{interval}s",
                                               "timeout": f"{min(10.0, interval / 2)}s"},
                                  "sites": sites})


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def step(n: int, urls: list[str], interval: float, warmup: float,
               window: float) -> dict[str, Any]:
    """One step of the ramp."""
    t0 = time.perf_counter()
    config = _config(n, urls, interval)
    latest = LatestResults()
    clients = HttpClients("storewatch-bench")
    metrics = AgentMetrics(latest)
    lateness = _Lateness(metrics.lateness)
    metrics.lateness = lateness  # type: ignore[assignment]
    runner = _Recorder(clients, Classifier(config), latest, metrics, config.agent.concurrency)
    scheduler = CheckScheduler(runner)
    scheduler.apply(config)
    scheduler.start()
    setup_s = time.perf_counter() - t0
    # First runs are spread over the interval from the start of apply(); those that fell due
    # while a big config was still being added fire as a burst at start. Wait that burst out.
    await asyncio.sleep(warmup + 2 * setup_s)
    runner.recording = lateness.recording = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    runner.recording = lateness.recording = False
    rss = _rss_mib()
    await scheduler.shutdown(2.0)
    await clients.aclose()
    late = sorted(lateness.values)

    def p(q: float) -> float:
        return late[min(len(late) - 1, int(q * len(late)))] if late else 0.0
    failed = sum(1 for o in latest.snapshot() if not o.result.success)
    due = n / interval * wall
    return {"checks": n, "setup_s": setup_s, "window_s": wall, "started": len(late),
            "finished": runner.finished, "probes_per_s": runner.finished / wall,
            "due_per_s": n / interval, "kept_up": runner.finished / due,
            "cpu_share": cpu / wall, "cpu_ms_per_probe": cpu / max(1, runner.finished) * 1000,
            "p50": p(0.5), "p99": p(0.99), "max": late[-1] if late else 0.0,
            "rss_mib": rss, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "failed_checks": failed}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checks", type=int)
    p.add_argument("urls", help="comma-separated base URLs (sites are spread over them)")
    p.add_argument("--interval", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--window", type=float, default=20.0)
    a = p.parse_args()
    if os.environ.get("BENCH_CPU"):
        os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
    result = asyncio.run(step(a.checks, a.urls.split(","), a.interval, a.warmup, a.window))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
