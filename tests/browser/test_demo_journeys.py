"""The example browser journey (config/examples/demo-browser.yaml) against the demo store in
JavaScript mode, in the real Chromium: healthy runs are clean, each browser-only fault is the
right kind and level with a screenshot, and the HTTP view of the shop stays green."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.evidence import evidence_root, evidence_url
from agent.httpclient import HttpClients
from agent.metrics.server import MetricsServer
from agent.pipeline import Classifier
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from agent.service import load
from agent.state.baselines import BaselineStore
from classifier import FindingKind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "demo-browser.yaml"
K = FindingKind
pytestmark = pytest.mark.usefixtures("shared_browser")


def example(url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Config:
    monkeypatch.setenv("STOREWATCH_DEMO_URL", url)
    monkeypatch.setenv("STOREWATCH_STATE_DIR", str(tmp_path / "state"))
    return load(EXAMPLE)


async def run(config: Config, clients: HttpClients, baselines: BaselineStore | None,
              check: str) -> ProbeResult:
    site = config.sites[0]
    spec = next(c for c in site.checks if c.name == check)
    ctx = ProbeContext(clients, site, 30.0, baselines=baselines)
    return await run_guarded(PROBES[spec.type], spec, ctx)


async def test_healthy_journey_is_clean_ten_runs_in_a_row(
        js_store: DemoStore, clients: HttpClients, baselines: BaselineStore,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = example(js_store.url, monkeypatch, tmp_path)
    for i in range(10):
        result = await run(config, clients, baselines, "journey")
        assert result.findings == (), f"run {i + 1}: {result.findings}"
        assert [s.name for s in result.steps] == ["home", "add-to-cart", "cart", "checkout"]
        assert result.measurements["page_errors"] == 0
        assert 0 < result.measurements["lcp_seconds"] < 4.0


@pytest.mark.parametrize(("fault", "kind", "level", "step"), [
    pytest.param("js_bundle", K.CHECKOUT_BROKEN, 1, "home", id="js_bundle"),
    pytest.param("js_error", K.CHECKOUT_BROKEN, 1, "add-to-cart", id="js_error"),
    pytest.param("skimmer_dynamic", K.SECURITY_BREACH, 1, None, id="skimmer_dynamic"),
    pytest.param("slow_render", K.SLOW_RESPONSE, 3, None, id="slow_render"),
])
async def test_browser_only_fault_is_found_while_http_stays_green(
        js_store: DemoStore, clients: HttpClients, baselines: BaselineStore,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str, kind: FindingKind,
        level: int, step: str | None) -> None:
    config = example(js_store.url, monkeypatch, tmp_path)
    async with httpx.AsyncClient(base_url=js_store.url) as http:
        (await http.post("/_demo/faults", json={"faults": [fault]})).raise_for_status()
        for path in ("/", "/cart", "/checkout", "/static/shop.js", "/static/tags.js"):
            assert (await http.get(path)).status_code == 200, path
    home = await run(config, clients, baselines, "home")
    assert home.success, home.findings

    result = await run(config, clients, baselines, "journey")
    observed = Classifier(config).observe(result)
    assert [(c.finding.kind, int(c.decision.level)) for c in observed.classified] == \
        [(kind, level)], result.findings
    finding = result.findings[0]
    if step is not None:
        assert finding.evidence.details["step"] == step
    shot = Path(finding.evidence.details["screenshot"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.is_relative_to(tmp_path / "state")
    log = json.loads(Path(finding.evidence.details["browser_log"]).read_text())
    assert log["url"].startswith(js_store.url)
    assert log["network"] or log["page_errors"], "what the step saw is part of the evidence"
    if fault == "js_error":  # the uncaught error is named, in the summary and the log
        assert "uncaught page error" in finding.summary and "push" in finding.summary
        assert any("push" in e for e in log["page_errors"])
        await _served_by_the_agent(shot, tmp_path / "state")
    if fault == "skimmer_dynamic":  # who injected the script: the tag manager, from the page
        chain = finding.evidence.details["initiator_chain"].split(" <- ")
        assert chain[0] == f"http://localhost:{js_store.port}/static/collect.js"
        assert chain[1] == js_store.url + "/static/tags.js"
    if fault == "slow_render":
        assert finding.evidence.details["metric"] == "lcp"
        assert float(finding.evidence.details["value"]) > 4.0


async def test_allowlisted_or_learned_origin_is_not_a_breach(
        js_store: DemoStore, clients: HttpClients, baselines: BaselineStore,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    js_store.set_faults(["skimmer_dynamic"])
    config = example(js_store.url, monkeypatch, tmp_path)
    site = config.sites[0]
    journey = next(c for c in site.checks if c.name == "journey")
    allowing = journey.model_copy(update={"allow": [f"http://localhost:{js_store.port}"]})
    ctx = ProbeContext(clients, site, 30.0, baselines=baselines)
    result = await run_guarded(PROBES["browser"], allowing, ctx)
    assert result.findings == ()
    learning = journey.model_copy(update={"learn_runs": 1})
    first = await run_guarded(PROBES["browser"], learning, ctx)
    second = await run_guarded(PROBES["browser"], learning, ctx)
    assert first.findings == () and second.findings == ()


async def _served_by_the_agent(shot: Path, state: Path) -> None:
    """The real screenshot, fetched at the URL a ticket links (the agent's /evidence/)."""
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: {"status": "ok"},
                           evidence_root=evidence_root(state))
    server.start()
    try:
        url = evidence_url(f"http://127.0.0.1:{server.port}", state, shot)
        assert url is not None and url.endswith(f"/evidence/demo-js/{shot.name}"), url
        async with httpx.AsyncClient() as http:
            got = await http.get(url)
    finally:
        server.stop()
    assert (got.status_code, got.headers["content-type"]) == (200, "image/png")
    assert got.content == shot.read_bytes()
