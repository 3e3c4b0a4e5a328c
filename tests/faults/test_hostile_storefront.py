"""The availability probe against a hostile storefront: every fault becomes the right finding
within the check's deadline, through the shared client stack (agent/httpclient.py)."""

from __future__ import annotations

import time

import pytest

from agent.config.schema import Config
from agent.httpclient import HttpClients
from agent.pipeline import Classifier
from agent.probes.availability import probe_availability
from agent.probes.base import DEADLINE_GRACE_S, ProbeContext, ProbeResult, run_guarded
from tests.faults.certs import HostileCerts
from tests.faults.faults import FAULTS, PROBE_TIMEOUT_S, Fault, fault_site
from tests.faults.hostile import MARKER, HostileServer

SLACK_S = 0.5
"""Scheduling slack on top of timeout + grace (a loaded CI machine)."""


def fault_config(fault: Fault, hostile: HostileServer, certs: HostileCerts) -> Config:
    site = fault_site(fault, hostile.url, hostile.tls_urls, str(certs.ca_cert))
    return Config.model_validate({"sites": [site]})


async def run_probe(clients: HttpClients, config: Config) -> ProbeResult:
    site = config.sites[0]
    ctx = ProbeContext(clients, site, PROBE_TIMEOUT_S)
    return await run_guarded(probe_availability, site.checks[0], ctx)  # type: ignore[arg-type]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
async def test_fault_becomes_the_right_finding_within_the_deadline(
        fault: Fault, hostile: HostileServer, hostile_certs: HostileCerts,
        clients: HttpClients) -> None:
    config = fault_config(fault, hostile, hostile_certs)
    start = time.perf_counter()
    result = await run_probe(clients, config)
    elapsed = time.perf_counter() - start
    assert elapsed <= PROBE_TIMEOUT_S + DEADLINE_GRACE_S + SLACK_S
    assert tuple(f.kind.value for f in result.findings) == fault.expect, result.findings
    assert result.success is (not fault.expect)
    if fault.failure is not None:
        assert result.findings[0].evidence.details["failure"] == fault.failure
    if fault.level is not None:
        (classified,) = Classifier(config).observe(result).classified
        assert classified.decision.level == fault.level
    for finding in result.findings:
        assert "\n" not in finding.summary


@pytest.mark.parametrize("path", ["/endless", "/gigabyte", "/gzip-bomb", "/gzip-bomb-nested",
                                  "/long-line"])
async def test_huge_bodies_are_cut_at_the_decoded_cap(path: str, hostile: HostileServer,
                                                     clients: HttpClients) -> None:
    check = {"name": "c", "path": path, "max_body_bytes": "300KiB", "body_contains": [MARKER]}
    config = Config.model_validate({"sites": [{"name": "s", "base_url": hostile.url,
                                               "checks": [check]}]})
    result = await run_probe(clients, config)
    assert result.measurements["body_bytes"] == 300 * 1024
    assert "body truncated at 307200 bytes" in result.findings[0].summary


async def test_deflate_without_zlib_header_still_decodes(hostile: HostileServer,
                                                         clients: HttpClients) -> None:
    config = Config.model_validate({"sites": [{"name": "s", "base_url": hostile.url, "checks": [
        {"name": "c", "path": "/deflate-raw", "body_contains": [MARKER],
         "selector": "main#maincontent"}]}]})
    result = await run_probe(clients, config)
    assert result.success, result.findings


async def test_agent_asks_only_for_codings_it_decodes_with_a_bound(
        hostile: HostileServer, clients: HttpClients) -> None:
    config = Config.model_validate({"sites": [{"name": "s", "base_url": hostile.url,
                                               "checks": [{"name": "c", "path": "/ok"}]}]})
    await run_probe(clients, config)
    (_, _, headers), = hostile.seen
    assert headers["accept-encoding"] == "gzip, deflate"
