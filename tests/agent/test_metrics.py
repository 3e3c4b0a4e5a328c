"""/metrics and /healthz of a running agent, scraped over HTTP, against the metric catalog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.metrics import catalog
from agent.service import Agent


def demo_config(url: str, state_dir: Path) -> Config:
    return Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "state_dir": str(state_dir),
                  "name": "probe-1", "location": "fra"},
        "sites": [{"name": "shop", "base_url": url, "interval": "1s", "timeout": "0.8s",
                   "checks": [{"name": "home", "type": "availability", "path": "/"},
                              {"name": "tops", "type": "availability",
                               "path": "/category/tops"}]}],
    })


@pytest.fixture
async def agent(store: DemoStore, tmp_path: Path) -> AsyncIterator[Agent]:
    running = Agent("test.yaml", demo_config(store.url, tmp_path / "state"))
    task = asyncio.create_task(running.serve())
    try:
        for _ in range(100):  # first runs are spread over the 1s interval
            if len(running.latest.snapshot()) == 2:
                break
            await asyncio.sleep(0.05)
        yield running
    finally:
        running.stop()
        await task


async def scrape(agent: Agent, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(agent.metrics_url, headers=headers)


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


async def test_probe_metrics_with_bounded_labels(agent: Agent, store: DemoStore) -> None:
    response = await scrape(agent)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    success = {(lab["site"], lab["check"]): v for lab, v in samples["storewatch_probe_success"]}
    assert success == {("shop", "home"): 1.0, ("shop", "tops"): 1.0}
    status = {lab["check"]: v for lab, v in samples["storewatch_probe_http_status_code"]}
    assert status == {"home": 200.0, "tops": 200.0}
    levels = {lab["level"] for lab, _ in samples["storewatch_probe_findings"]}
    assert levels == {"L1", "L2", "L3", "L4"}
    steps = {lab["step"] for lab, _ in samples["storewatch_probe_step_duration_seconds"]}
    assert steps == {"response", "total"}
    (build,) = samples["storewatch_build_info"]
    assert build[0]["version"]
    assert samples["storewatch_agent_info"] == [
        ({"agent": "probe-1", "location": "fra", "version": build[0]["version"]}, 1.0)]
    # the check series keep their labels (dashboards and rules join on the info series)
    assert set(samples["storewatch_probe_success"][0][0]) == {"site", "check"}
    assert {(o.agent, o.location) for o in agent.latest.snapshot()} == {("probe-1", "fra")}
    assert samples["storewatch_checks_configured"] == [({}, 2.0)]
    worst = {lab["check"]: v for lab, v in samples["storewatch_probe_worst_level"]}
    assert worst == {"home": 0.0, "tops": 0.0}
    intervals = {lab["check"]: v for lab, v in samples["storewatch_probe_interval_seconds"]}
    assert intervals == {"home": 1.0, "tops": 1.0}
    assert samples["storewatch_config_last_reload_successful"] == [({}, 1.0)]
    assert samples["storewatch_scheduler_lateness_seconds_count"][0][1] >= 2
    for name, series in samples.items():
        for labels, _ in series:
            for value in labels.values():
                assert "://" not in value, f"{name} has a URL label"


async def test_findings_show_up_by_level(agent: Agent, store: DemoStore) -> None:
    store.set_faults(["server_error"])
    for _ in range(60):
        samples = parse((await scrape(agent)).text)
        by_level = {(lab["check"], lab["level"]): v
                    for lab, v in samples["storewatch_probe_findings"]}
        if by_level.get(("home", "L1")) == 1.0 and by_level.get(("tops", "L2")) == 1.0:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"findings never reached /metrics: {by_level}")
    totals = {(lab["kind"], lab["level"]) for lab, v in samples["storewatch_findings_total"]
              if v > 0}
    assert {("site_down", "L1"), ("partial_outage", "L2")} <= totals
    success = {lab["check"]: v for lab, v in samples["storewatch_probe_success"]}
    worst = {lab["check"]: v for lab, v in samples["storewatch_probe_worst_level"]}
    assert (success, worst) == ({"home": 0.0, "tops": 0.0}, {"home": 1.0, "tops": 2.0})


async def test_a_slow_but_working_check_passes_with_its_level_shown(store: DemoStore,
                                                                     tmp_path: Path) -> None:
    """An L3 slow_response on a request that succeeded: success stays 1, worst level 3."""
    config = Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "state_dir": str(tmp_path / "s")},
        "sites": [{"name": "shop", "base_url": store.url, "interval": "1s", "timeout": "0.8s",
                   "checks": [{"name": "home", "type": "availability", "path": "/",
                               "latency_threshold": "0.001s"}]}],
    })
    running = Agent("test.yaml", config)
    task = asyncio.create_task(running.serve())
    try:
        for _ in range(100):
            samples = parse((await scrape(running)).text)
            if samples.get("storewatch_probe_worst_level"):
                break
            await asyncio.sleep(0.05)
        findings = {lab["level"]: v for lab, v in samples["storewatch_probe_findings"]}
        assert findings["L3"] == 1.0 and findings["L1"] == findings["L2"] == 0.0
        assert samples["storewatch_probe_success"] == [({"site": "shop", "check": "home"}, 1.0)]
        assert samples["storewatch_probe_worst_level"] == [
            ({"site": "shop", "check": "home"}, 3.0)]
    finally:
        running.stop()
        await task


async def test_every_exported_family_is_in_the_catalog(agent: Agent) -> None:
    text = (await scrape(agent)).text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    known = {name for m in catalog.ALL for name in catalog.exposed_names(m)}
    assert exported <= known, exported - known
    for metric in catalog.ALL:
        assert metric.name.startswith("storewatch_")
        assert "url" not in metric.labels


async def test_gzip_when_the_scraper_accepts_it(agent: Agent) -> None:
    async with httpx.AsyncClient() as client:
        raw = await client.send(client.build_request("GET", agent.metrics_url,
                                                     headers={"Accept-Encoding": "gzip"}),
                                stream=True)
        body = await raw.aread()  # httpx undoes the gzip
    assert raw.headers["content-encoding"] == "gzip"
    assert int(raw.headers["content-length"]) < len(body)
    assert b"storewatch_probe_success" in body


async def test_openmetrics_on_request(agent: Agent) -> None:
    response = await scrape(agent, Accept="application/openmetrics-text; version=1.0.0")
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_healthz_and_unknown_paths(agent: Agent) -> None:
    base = agent.metrics_url.removesuffix("/metrics")
    async with httpx.AsyncClient() as client:
        health = await client.get(base + "/healthz")
        missing = await client.get(base + "/nope")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["checks"] == 2
    assert missing.status_code == 404


async def test_listen_defaults_to_loopback() -> None:
    cfg = Config.model_validate({"sites": [{"name": "s", "base_url": "http://x.example",
                                            "checks": [{"name": "c"}]}]})
    assert cfg.agent.listen.startswith("127.0.0.1:")


async def test_incident_and_outbox_metrics(tmp_path: Path, store: DemoStore) -> None:
    store.set_faults(["server_error"])
    running = Agent("test.yaml", demo_config(store.url, tmp_path / "state"))
    task = asyncio.create_task(running.serve())
    try:
        for _ in range(100):
            samples = parse((await scrape(running)).text)
            deliveries = {(lab["sink"], lab["action"], lab["outcome"]): v
                          for lab, v in samples.get("storewatch_ticket_deliveries_total", [])}
            if deliveries.get(("sqlite", "open", "delivered")) == 1.0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the ticket delivery never reached /metrics")
        open_ = {(lab["site"], lab["level"]): v
                 for lab, v in samples["storewatch_incidents_open"]}
        assert open_[("shop", "L1")] == 1.0
        opened = {(lab["site"], lab["level"]): v
                  for lab, v in samples["storewatch_incidents_opened_total"]}
        assert opened[("shop", "L1")] == 1.0
        assert samples["storewatch_outbox_pending"] == [({}, 0.0)]
        assert samples["storewatch_outbox_oldest_pending_age_seconds"] == [({}, 0.0)]
        assert samples["storewatch_outbox_dead_letters"] == [({}, 0.0)]
    finally:
        running.stop()
        await task
