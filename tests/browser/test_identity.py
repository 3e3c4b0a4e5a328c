"""Browser journeys in the real Chromium carry the agent's name to the monitored site's origin
only: the demo store's per-agent faults hit only that agent's journey, and a third-party
origin never sees ``X-Storewatch-Agent`` or the agent's User-Agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from agent.browser.identity import origin_pattern, send_identity
from agent.browser.runtime import shared_runtime
from agent.config.schema import AgentSettings
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.probes import PROBES
from agent.probes.base import ProbeContext
from agent.service import load
from agent.state.baselines import BaselineStore
from classifier import FindingKind
from tests.agent.servers import serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "demo-browser.yaml"
pytestmark = pytest.mark.usefixtures("shared_browser")


def test_origin_pattern() -> None:
    pattern = origin_pattern("https://Shop.Example:443/de/")
    assert pattern is not None
    assert pattern.match("https://shop.example/cart") and pattern.match("https://shop.example")
    assert not pattern.match("https://shop.example.evil.test/")
    assert not pattern.match("https://shop.example:8443/")
    assert not pattern.match("http://shop.example/")
    loopback = origin_pattern("http://127.0.0.1:8766")
    assert loopback is not None and loopback.match("http://127.0.0.1:8766/static/a.js")
    assert origin_pattern("mailto:x@example.com") is None


async def test_per_agent_fault_hits_only_that_agents_journey(
        js_store: DemoStore, baselines: BaselineStore, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("STOREWATCH_DEMO_URL", js_store.url)
    monkeypatch.setenv("STOREWATCH_STATE_DIR", str(tmp_path / "state"))
    site = load(EXAMPLE).sites[0]
    journey = next(c for c in site.checks if c.name == "journey")
    js_store.set_faults(["js_bundle"], agents=["fra-1"])   # the shop's JS breaks for fra-1 only
    kinds = {}
    for name in ("fra-1", "nyc-1"):
        clients = HttpClients.for_agent(AgentSettings(name=name))
        try:
            ctx = ProbeContext(clients, site, 30.0, baselines=baselines)
            result = await PROBES["browser"](journey, ctx)
        finally:
            await clients.aclose()
        kinds[name] = [f.kind for f in result.findings]
    assert kinds == {"fra-1": [FindingKind.CHECKOUT_BROKEN], "nyc-1": []}


async def test_third_party_origins_never_see_the_identity() -> None:
    seen: list[tuple[str, str, str | None, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.host.split(":")[0], request.path,
                     request.headers.get("X-Storewatch-Agent"),
                     request.headers.get("User-Agent", "")))
        if request.path == "/":
            port = request.host.rsplit(":", 1)[1]
            # localhost is another origin than 127.0.0.1 (same server, so it can tell us)
            return web.Response(content_type="text/html", text=(
                '<html><body><script src="/own.js"></script>'
                f'<img src="http://localhost:{port}/pixel.gif">'
                f'<script src="http://localhost:{port}/tag.js"></script></body></html>'))
        return web.Response(text="", content_type="application/javascript")

    async with serve({"/{tail:.*}": handler}) as url:
        clients = HttpClients.for_agent(AgentSettings(name="fra-1"))
        try:
            async with shared_runtime().journey_context() as context:
                await send_identity(context, url, clients.identity)
                page = await context.new_page()
                await page.goto(url + "/", wait_until="load")
        finally:
            await clients.aclose()
    ours = clients.identity["User-Agent"]
    own = [(path, agent, ua.endswith(" " + ours)) for host, path, agent, ua in seen
           if host == "127.0.0.1"]
    third = [(path, agent, ours in ua) for host, path, agent, ua in seen if host == "localhost"]
    assert sorted(own) == [("/", "fra-1", True), ("/own.js", "fra-1", True)]
    assert sorted(third) == [("/pixel.gif", None, False), ("/tag.js", None, False)]
    assert all("Chrome/" in ua for _, _, _, ua in seen)   # Chromium's own UA stays in front
