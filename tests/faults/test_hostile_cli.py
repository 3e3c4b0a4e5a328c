"""``storewatch check`` in a real subprocess against every hostile endpoint at once: the right
findings, every probe within its deadline, memory within ``MEMORY_BOUND_BYTES``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from agent.probes.base import DEADLINE_GRACE_S
from tests.faults.certs import HostileCerts
from tests.faults.faults import FAULTS, MEMORY_BOUND_BYTES, PROBE_TIMEOUT_S, fault_site
from tests.faults.hostile import HostileServer
from tests.faults.measure import run_measured

SLACK_S = 1.0


async def test_check_command_survives_every_fault_at_once(
        hostile: HostileServer, hostile_certs: HostileCerts, tmp_path: Path) -> None:
    sites = [fault_site(f, hostile.url, hostile.tls_urls, str(hostile_certs.ca_cert))
             for f in FAULTS]
    config = tmp_path / "hostile.yaml"
    config.write_text(yaml.safe_dump({"sites": sites}))

    run = await asyncio.to_thread(run_measured, "check", "--json", "-c", str(config))

    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    results = {r["site"]: r for r in json.loads(run.stdout)["results"]}
    assert set(results) == {f.id for f in FAULTS}
    for fault in FAULTS:
        result = results[fault.id]
        assert tuple(f["kind"] for f in result["findings"]) == fault.expect, fault.id
        assert result["duration_seconds"] <= PROBE_TIMEOUT_S + DEADLINE_GRACE_S + SLACK_S
    assert run.peak_rss_bytes < MEMORY_BOUND_BYTES, run.peak_rss_bytes
