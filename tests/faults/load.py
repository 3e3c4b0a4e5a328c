"""Load run shared by the test and ``report.py``: the real daemon (``storewatch run``) with N
checks against a fast loopback server, scraped every second; CPU and memory of the daemon."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from tests.conftest import ROOT
from tests.faults.hostile import MARKER, HostileServer

LOAD_CHECKS = 500
LOAD_INTERVAL = "5s"
LOAD_SECONDS = 15.0
CPU_BOUND = 0.9
"""Share of one core the daemon may use on average (1.0 would mean it cannot keep up)."""
RSS_BOUND_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class LoadFigures:
    """What one load run measured."""

    checks: int
    seconds: float
    scrapes: int
    failed_scrapes: int
    worst_scrape_s: float
    cpu_share: float
    """Average CPU (user+system) of the daemon over the run, as a share of one core."""
    peak_rss_bytes: int
    checks_run: int
    """Checks with at least one run by the end."""
    checks_succeeding: int
    runs: int
    lateness_p99_bucket: float
    """Upper bound of the histogram bucket holding the 99th percentile of lateness."""


def load_config(hostile: HostileServer, checks: int, state_dir: Path) -> dict[str, object]:
    per_site = 5
    return {
        "agent": {"listen": "127.0.0.1:0", "state_dir": str(state_dir), "concurrency": 100},
        "defaults": {"interval": LOAD_INTERVAL, "timeout": "2s"},
        "sites": [{"name": f"shop-{i}", "base_url": hostile.url,
                   "checks": [{"name": f"page-{j}", "path": "/ok", "body_contains": [MARKER]}
                              for j in range(per_site)]}
                  for i in range(checks // per_site)],
    }


async def run_load(hostile: HostileServer, workdir: Path, checks: int = LOAD_CHECKS,
                   seconds: float = LOAD_SECONDS) -> LoadFigures:
    """Start ``storewatch run``, scrape /metrics every second for ``seconds``, stop it."""
    config = workdir / "load.yaml"
    config.write_text(yaml.safe_dump(load_config(hostile, checks, workdir / "state")))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config),
                             "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ}, text=True)
    agent = psutil.Process(proc.pid)
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes, failed, worst, peak, text = 0, 0, 0.0, 0, ""
    try:
        async with httpx.AsyncClient(timeout=5.0) as scraper:
            await _wait_up(scraper, url)
            cpu0, t0 = sum(agent.cpu_times()[:2]), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                tick = time.perf_counter()
                try:
                    response = await scraper.get(url)
                    failed += response.status_code != 200
                    text = response.text if response.status_code == 200 else text
                except httpx.HTTPError:
                    failed += 1
                scrapes += 1
                worst = max(worst, time.perf_counter() - tick)
                peak = max(peak, agent.memory_info().rss)
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
            cpu = (sum(agent.cpu_times()[:2]) - cpu0) / (time.perf_counter() - t0)
    finally:
        proc.terminate()
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    if proc.returncode != 0 or "Traceback" in err:
        raise AssertionError(f"daemon exited {proc.returncode}: {err[-2000:]}")
    success = [float(v) for v in re.findall(r"^storewatch_probe_success\{[^}]*\} (\S+)$",
                                            text, re.M)]
    runs = sum(float(v) for v in re.findall(
        r"^storewatch_probe_runs_total\{[^}]*\} (\S+)$", text, re.M))
    return LoadFigures(checks, seconds, scrapes, failed, worst, cpu, peak, len(success),
                       sum(1 for v in success if v == 1.0), int(runs), _p99_bucket(text))


def _p99_bucket(text: str) -> float:
    buckets = [(float("inf") if le == "+Inf" else float(le), float(n)) for le, n in re.findall(
        r'^storewatch_scheduler_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    total = buckets[-1][1]
    return next(le for le, n in buckets if n >= 0.99 * total)


async def _wait_up(client: httpx.AsyncClient, url: str) -> None:
    for _ in range(100):
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the daemon never served /metrics")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
