"""Print the fault suite's figures as Markdown tables (for the issue's closing note).

    .venv/bin/python -m tests.faults.report [--seconds 4] [--no-load]

Per fault: the finding ``storewatch check`` produced (a real subprocess), the probe's end time
against its deadline, the subprocess's peak RSS (wait4), and the worst lateness of five healthy
sites' checks (1 s interval) while the hostile check ran on the real scheduler. Then the load
run (500 checks, scraped every second), 200 slowloris connections against /metrics, and the
bad-input counts. Takes about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import yaml

from agent.config.schema import Config
from agent.demo.storefront import start_store
from agent.probes.base import DEADLINE_GRACE_S
from tests.faults.broken_configs import CORPUS
from tests.faults.certs import make_certs, server_contexts
from tests.faults.faults import FAULTS, MEMORY_BOUND_BYTES, PROBE_TIMEOUT_S, Fault, fault_site
from tests.faults.hostile import HostileServer, start_hostile
from tests.faults.load import CPU_BOUND, RSS_BOUND_BYTES, run_load
from tests.faults.measure import run_measured
from tests.faults.schedule import run_schedule

MIB = 1024 * 1024


async def one_fault(fault: Fault, hostile: HostileServer, ca: str, store_url: str,
                    workdir: Path, seconds: float) -> str:
    site = fault_site(fault, hostile.url, hostile.tls_urls, ca)
    config = workdir / f"{fault.id}.yaml"
    config.write_text(yaml.safe_dump({"sites": [site]}))
    run = await asyncio.to_thread(run_measured, "check", "--json", "-c", str(config))
    (result,) = json.loads(run.stdout)["results"]
    observed = ", ".join(f"{f['kind']} L{f['level']}" if f["level"] else f["kind"]
                         for f in result["findings"]) or "none"
    expected = ", ".join(fault.expect) or "none"
    verdict = "ok" if tuple(f["kind"] for f in result["findings"]) == fault.expect else "WRONG"
    healthy = [{"name": f"healthy-{i}", "base_url": store_url, "interval": "1s",
                "timeout": "0.5s", "checks": [{"name": "home"}]} for i in range(5)]
    schedule = await run_schedule(Config.model_validate(
        {"agent": {"jitter": 0}, "sites": [{**site, "interval": "2s"}, *healthy]}), seconds)
    deadline = PROBE_TIMEOUT_S + DEADLINE_GRACE_S
    return (f"| {fault.id} | {expected} | {observed} ({verdict}) | "
            f"{result['duration_seconds']:.2f} s / {deadline:g} s | "
            f"{run.peak_rss_bytes / MIB:.0f} MiB | "
            f"{schedule.worst_lateness('healthy-') * 1000:.0f} ms |")


def slowloris_row() -> str:
    """200 slowloris connections against a MetricsServer with its documented limits."""
    from prometheus_client import CollectorRegistry, Gauge

    from agent.metrics.server import HEADER_TIMEOUT_S, MAX_CONNECTIONS, MetricsServer
    from tests.faults.slowloris import ATTACKERS, attack

    registry = CollectorRegistry()
    Gauge("storewatch_report_up", "report", registry=registry).set(1)
    server = MetricsServer("127.0.0.1", 0, registry, dict)
    server.start()
    try:
        f = attack(server, 1.5 * HEADER_TIMEOUT_S, "storewatch_report_up 1.0")
    finally:
        server.stop()
    return (f"{ATTACKERS} connections dripping headers for {f.seconds:g} s: scrapes answered "
            f"{f.scrapes_ok}/{f.scrapes}, server connections at most {f.peak_connections} "
            f"(bound {MAX_CONNECTIONS}), threads {f.threads_before} → at most {f.peak_threads}, "
            f"slow connections cut {f.reopened} times")


async def main(seconds: float, load: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="storewatch-faults-"))
    certs = make_certs(workdir)
    hostile = await start_hostile(server_contexts(certs))
    store = await start_store("127.0.0.1", 0)
    try:
        print(f"Hostile storefront: probe timeout {PROBE_TIMEOUT_S:g} s (deadline + grace "
              f"{PROBE_TIMEOUT_S + DEADLINE_GRACE_S:g} s), memory bound "
              f"{MEMORY_BOUND_BYTES // MIB} MiB, 5 healthy checks every 1 s alongside.\n")
        print("| fault | expected finding | observed (`storewatch check`) | probe end / deadline"
              " | peak RSS | healthy checks' worst lateness |")
        print("|---|---|---|---|---|---|")
        for fault in FAULTS:
            print(await one_fault(fault, hostile, str(certs.ca_cert), store.url, workdir,
                                  seconds), flush=True)
        if load:
            f = await run_load(hostile, workdir)
            print(f"\nLoad: {f.checks} checks every 5 s against a loopback server for "
                  f"{f.seconds:g} s, /metrics scraped every second.\n")
            print("| checks | runs | scrapes (failed) | worst scrape | CPU (one core) | "
                  "peak RSS | lateness p99 bucket |")
            print("|---|---|---|---|---|---|---|")
            print(f"| {f.checks_succeeding}/{f.checks} green | {f.runs} | {f.scrapes} "
                  f"({f.failed_scrapes}) | {f.worst_scrape_s * 1000:.0f} ms | "
                  f"{f.cpu_share:.0%} (bound {CPU_BOUND:.0%}) | {f.peak_rss_bytes / MIB:.0f} MiB "
                  f"(bound {RSS_BOUND_BYTES // MIB} MiB) | ≤ {f.lateness_p99_bucket:g} s |")
        print(f"\n/metrics under slowloris: {slowloris_row()}")
        print(f"\nBad inputs: {len(CORPUS)} broken configs x 2 commands (validate, check) = "
              f"{2 * len(CORPUS)} subprocess runs, plus hypothesis fuzzing (see test_fuzz.py).")
    finally:
        await hostile.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="how long each fault runs on the scheduler")
    parser.add_argument("--no-load", action="store_true", help="skip the 500-check load run")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, not args.no_load))
