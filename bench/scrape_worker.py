"""Goal 5 in its own process: ``python -m bench.scrape_worker SITES``.

Fills the agent's real metric state (LatestResults + AgentMetrics, through the classifier) with
SITES sites x every check type (today: availability on a home page and a category page, over
HTTPS so the certificate-expiry series exists), one finding on every tenth check, then times
the agent's ``/metrics`` generation against prometheus-client's direct exposition of the same
series (Gauge/Counter/Histogram objects, ``.labels()`` children, same values). Prints JSON.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.schema import Config
from agent.metrics import catalog as c
from agent.metrics.collectors import AgentMetrics
from agent.metrics.server import MetricsServer
from agent.pipeline import Classifier, LatestResults
from agent.probes.base import ProbeResult, StepTiming
from classifier import Evidence, Finding, FindingKind

CHECKS = ("home", "category")
REPEATS = 10


def _config(sites: int) -> Config:
    return Config.model_validate({"sites": [
        {"name": f"shop-{i:05d}", "base_url": f"https://shop-{i:05d}.example.com",
         "checks": [{"name": "home", "type": "availability"},
                    {"name": "category", "type": "availability", "path": "/category/tops"}]}
        for i in range(sites)]})


def _result(site: str, check: str, i: int, now: datetime) -> ProbeResult:
    findings: tuple[Finding, ...] = ()
    if i % 10 == 0:
        findings = (Finding(site, check, FindingKind.SLOW_RESPONSE, "took 2.10s (threshold 2s)",
                            now, Evidence(url="https://x/", status=200)),)
    return ProbeResult(site=site, check=check, success=not findings, duration_s=0.0421 + i * 1e-6,
                       started_at=now, steps=(StepTiming("response", 0.031),
                                              StepTiming("total", 0.0421)),
                       measurements={"http_status": 200.0, "body_bytes": 51234.0,
                                     "redirects": 0.0, "response_seconds": 0.031,
                                     "tls_cert_expiry_timestamp_seconds": 1.79e9 + i},
                       findings=findings)


def _timed(fn: Any) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(REPEATS):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def _direct(agent_registry: CollectorRegistry) -> CollectorRegistry:
    """The same series as plain prometheus-client instruments (the library's own exposition)."""
    reg = CollectorRegistry(auto_describe=True)
    for family in text_string_to_metric_families(generate_latest(agent_registry).decode()):
        if family.type == "histogram":
            hist = Histogram(family.name, family.documentation, buckets=c.LATENESS_BUCKETS,
                             registry=reg)
            for _ in range(3):
                hist.observe(0.004)
            continue
        if family.type == "info":
            continue  # one build-info line: not worth a special case
        labels = sorted({k for s in family.samples for k in s.labels})
        cls = Counter if family.type == "counter" else Gauge
        metric = cls(family.name, family.documentation, labels, registry=reg)
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            child = metric.labels(**sample.labels) if labels else metric
            if isinstance(child, Counter):
                child.inc(sample.value)
            else:
                child.set(sample.value)
    return reg


def _series(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def _scrape(url: str, gz: bool) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(REPEATS):
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            size = len(resp.read())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def main() -> None:
    sites = int(sys.argv[1])
    if os.environ.get("BENCH_CPU"):
        os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
    config = _config(sites)
    latest = LatestResults()
    metrics = AgentMetrics(latest)
    metrics.config_loaded(True, config)  # what the daemon exports from its config (intervals)
    classifier = Classifier(config)
    now = datetime.now(UTC)
    i = 0
    for site in config.sites:
        for check in CHECKS:
            obs = classifier.observe(_result(site.name, check, i, now))
            latest.put(obs)
            metrics.observed(obs, "success" if obs.result.success else "failure")
            metrics.lateness.observe(0.004)
            i += 1
    agent_s, agent_text = _timed(lambda: generate_latest(metrics.registry))
    direct = _direct(metrics.registry)
    direct_s, direct_text = _timed(lambda: generate_latest(direct))
    gzip_s, gz = _timed(lambda: gzip.compress(agent_text, compresslevel=6))
    server = MetricsServer("127.0.0.1", 0, metrics.registry, lambda: {})
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        plain_wall, plain_size = _scrape(url, False)
        gzip_wall, gzip_size = _scrape(url, True)
    finally:
        server.stop()
    print(json.dumps({
        "sites": sites, "checks": i, "series": _series(agent_text),
        "direct_series": _series(direct_text), "agent_s": agent_s, "direct_s": direct_s,
        "bytes": len(agent_text), "direct_bytes": len(direct_text), "gzip_bytes": len(gz),
        "gzip_s": gzip_s, "scrape_plain_s": plain_wall, "scrape_plain_bytes": plain_size,
        "scrape_gzip_s": gzip_wall, "scrape_gzip_bytes": gzip_size}))


if __name__ == "__main__":
    main()
