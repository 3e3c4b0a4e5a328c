"""A running agent with a ``host:`` section: /metrics series and findings through the pipeline."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.metrics import catalog
from agent.service import Agent
from classifier import FindingKind, Level
from tests.agent.host.conftest import MARKER
from tests.conftest import storewatch


def host_config(url: str, mail_cmd: str, state_dir: Path) -> Config:
    return Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "state_dir": str(state_dir)},
        "sites": [{"name": "shop", "base_url": url, "interval": "1s", "timeout": "0.8s",
                   "checks": [{"name": "home"}]}],
        "host": {"site": "shop", "interval": "1s", "reading_timeout": "0.5s",
                 "services": [{"name": "agent", "cmdline": [MARKER]},
                              {"name": "php-fpm", "process_names": ["php-fpm-not-here"]}],
                 "mail_queue": {"mta": "command", "command": [mail_cmd], "max_messages": 5}},
    })


@pytest.fixture
async def agent(store: DemoStore, tmp_path: Path,
                marked_process: subprocess.Popen[bytes]) -> AsyncIterator[Agent]:
    mail = tmp_path / "queue"
    mail.write_text('#!/bin/sh\necho \'{"messages": 9, "oldest_age_seconds": 120}\'\n')
    mail.chmod(0o755)
    running = Agent("test.yaml", host_config(store.url, str(mail), tmp_path / "state"))
    task = asyncio.create_task(running.serve())
    try:
        for _ in range(100):
            if len(running.latest.snapshot()) == 5:
                break
            await asyncio.sleep(0.05)
        yield running
    finally:
        running.stop()
        await task


async def test_host_findings_flow_through_the_pipeline(agent: Agent) -> None:
    latest = {o.result.check: o for o in agent.latest.snapshot()}
    assert set(latest) == {"home", "host", "service-agent", "service-php-fpm", "mail-queue"}
    down = latest["service-php-fpm"].classified
    assert [(c.finding.kind, c.decision.level, c.finding.site) for c in down] == [
        (FindingKind.SERVICE_DOWN, Level.L2, "shop")]
    assert latest["service-agent"].result.success
    mail = latest["mail-queue"].classified
    assert [(c.finding.kind, c.decision.level) for c in mail] == [
        (FindingKind.EMAIL_NOT_SENT, Level.L2)]


async def test_metrics_show_host_series_from_the_catalog(agent: Agent) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(agent.metrics_url)).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    for name in ("storewatch_host_cpu_seconds_total", "storewatch_host_memory_total_bytes",
                 "storewatch_host_memory_available_bytes", "storewatch_host_load_average",
                 "storewatch_host_cpus", "storewatch_host_collector_success",
                 "storewatch_mail_queue_messages"):
        assert samples.get(name), f"{name} missing"
    up = {lab["service"]: v for lab, v in samples["storewatch_host_service_up"]}
    assert up == {"agent": 1.0, "php-fpm": 0.0}
    (info,) = samples["storewatch_host_info"]
    assert info[0]["site"] == "shop"
    assert all(v == 1.0 for _, v in samples["storewatch_host_collector_success"])
    success = {lab["check"]: v for lab, v in samples["storewatch_probe_success"]}
    assert success["service-php-fpm"] == 0.0 and success["mail-queue"] == 0.0
    known = {n for m in catalog.ALL for n in catalog.exposed_names(m)}
    exported = set(samples)
    assert exported <= known, exported - known


async def test_reload_without_host_drops_host_results(agent: Agent, tmp_path: Path,
                                                      store: DemoStore) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(f"agent: {{listen: '127.0.0.1:0'}}\nsites:\n  - name: shop\n"
                    f"    base_url: {store.url}\n    checks: [{{name: home}}]\n")
    agent.config_path = path
    assert agent.reload()
    assert {o.result.check for o in agent.latest.snapshot()} <= {"home"}
    async with httpx.AsyncClient() as client:
        text = (await client.get(agent.metrics_url)).text
    assert "storewatch_host_" not in text


def test_check_command_reports_a_missing_service(write_config: Callable[[str], Path]) -> None:
    path = write_config("""
        sites:
          - name: shop
            base_url: http://127.0.0.1:9
            timeout: 0.5s
            checks: [{name: home}]
        host:
          site: shop
          services: [{name: php-fpm, process_names: [php-fpm-not-running]}]
    """)
    proc = storewatch("check", "-c", str(path), "--json")
    assert proc.returncode == 1, proc.stderr
    results = {r["check"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"home", "host", "service-php-fpm"}
    (finding,) = results["service-php-fpm"]["findings"]
    assert (finding["kind"], finding["level"]) == ("service_down", 2)


async def test_node_metrics_off_keeps_findings_but_exports_no_machine_series(
        store: DemoStore, tmp_path: Path, marked_process: subprocess.Popen[bytes]) -> None:
    """For servers that run node_exporter: thresholds still become findings; /metrics has no
    CPU/memory/filesystem/service series of its own."""
    mail = tmp_path / "queue"
    mail.write_text('#!/bin/sh\necho \'{"messages": 9, "oldest_age_seconds": 120}\'\n')
    mail.chmod(0o755)
    config = host_config(store.url, str(mail), tmp_path / "state")
    assert config.host is not None
    config = config.model_copy(update={"host": config.host.model_copy(
        update={"node_metrics": False})})
    running = Agent("test.yaml", config)
    task = asyncio.create_task(running.serve())
    try:
        for _ in range(100):
            if len(running.latest.snapshot()) == 5:
                break
            await asyncio.sleep(0.05)
        latest = {o.result.check: o for o in running.latest.snapshot()}
        assert [c.finding.kind for c in latest["service-php-fpm"].classified] == [
            FindingKind.SERVICE_DOWN]
        async with httpx.AsyncClient() as client:
            text = (await client.get(running.metrics_url)).text
    finally:
        running.stop()
        await task
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    host = {n for n in names if n.startswith("storewatch_host_")}
    assert host == {"storewatch_host_info"}
    assert "storewatch_mail_queue_messages" in names
    assert {"storewatch_probe_success", "storewatch_probe_worst_level"} <= names
