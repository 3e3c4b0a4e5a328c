"""A corrupted page is corrupted, not "missing products" (issue 11.3): framework error pages and
template leaks, the site's ``error_markers`` in every check that reads a page, baselines that
learn only from passing runs, and ``storewatch check`` that writes no baselines unless asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.probes.content import error_signature, template_leak
from agent.service import check_once
from agent.state.baselines import FILENAME, BaselineStore
from classifier import FindingKind
from tests.agent.commerce import kinds, run_check
from tests.agent.servers import serve

K = FindingKind
CARDS = "".join(f"<li class='product-card'>P{i}</li>" for i in range(30))


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()


def site_config(url: str, check: dict[str, Any], **site: Any) -> Config:
    return Config.model_validate({"sites": [{"name": "shop", "base_url": url,
                                             "checks": [check], **site}]})


def html(body: str) -> web.Response:
    return web.Response(text=f"<html><head><link rel='stylesheet' href='/missing.css'></head>"
                             f"<body><main>{body}</main></body></html>", content_type="text/html")


CATALOG = {"name": "catalog", "type": "catalog", "pages": ["/category/tops"],
           "count": {"css": "li.product-card"}, "min_count": 10}


async def test_template_leak_with_no_products_is_page_corrupted_only(
        clients: HttpClients, tmp_path: Path) -> None:
    """The issue's case: 200, raw template tags, no product cards → not catalog_missing."""
    async def listing(request: web.Request) -> web.Response:
        return html("<ul>{% for product in category.products %}"
                    "<li class='product-card'>{{ product.name }}</li>{% endfor %}</ul>")

    baselines = BaselineStore.open(tmp_path)
    assert baselines is not None
    async with serve({"/category/tops": listing}) as url:
        result = await run_check(clients, site_config(url, CATALOG), baselines=baselines)
    assert kinds(result) == [K.PAGE_CORRUPTED]
    assert "raw template tag '{% for product in category.products %}'" in \
        result.findings[0].summary
    assert "{% for" in (result.findings[0].evidence.excerpt or "")
    assert baselines.recent_counts("shop", "catalog", 10) == []  # the 0 is not learned


async def test_an_error_page_that_still_counts_products_is_not_counted(
        clients: HttpClients, tmp_path: Path) -> None:
    async def listing(request: web.Request) -> web.Response:
        return html(f"<b>Fatal error</b>: Uncaught Error in /var/www/app/Block.php:12<ul>{CARDS}"
                    "</ul>")

    baselines = BaselineStore.open(tmp_path)
    assert baselines is not None
    async with serve({"/category/tops": listing}) as url:
        result = await run_check(clients, site_config(url, CATALOG), baselines=baselines)
    assert kinds(result) == [K.PAGE_CORRUPTED]
    assert "a PHP error" in result.findings[0].summary
    assert baselines.recent_counts("shop", "catalog", 10) == []


async def test_a_drop_is_reported_and_not_learned(clients: HttpClients, tmp_path: Path) -> None:
    count = {"n": 30}

    async def listing(request: web.Request) -> web.Response:
        return html("<ul>" + CARDS[: len(CARDS) * count["n"] // 30] + "</ul>")

    baselines = BaselineStore.open(tmp_path)
    assert baselines is not None
    async with serve({"/category/tops": listing}) as url:
        cfg = site_config(url, CATALOG)
        assert (await run_check(clients, cfg, baselines=baselines)).success
        count["n"] = 12
        dropped = await run_check(clients, cfg, baselines=baselines)
    assert kinds(dropped) == [K.CATALOG_MISSING]
    assert baselines.recent_counts("shop", "catalog", 10) == [30.0]


MARKER = "Our shop is taking a break"


@pytest.mark.parametrize(("check", "path"), [
    pytest.param(CATALOG, "/category/tops", id="catalog"),
    pytest.param({"name": "search", "type": "search",
                  "queries": [{"path": "/search?q=tee"}]}, "/search", id="search"),
    pytest.param({"name": "home", "path": "/category/tops", "role": "page"}, "/category/tops",
                 id="availability"),
    pytest.param({"name": "integrity", "type": "integrity", "pages": ["/category/tops"],
                  "check_assets": False}, "/category/tops", id="integrity"),
    pytest.param({"name": "flow", "type": "checkout", "steps": [
        {"name": "cart", "path": "/category/tops", "expect": {"selector": ["li.product-card"]}}]},
        "/category/tops", id="steps"),
    pytest.param({"name": "scripts", "type": "security", "pages": ["/category/tops"],
                  "learn_runs": 0}, "/category/tops", id="security"),
])
async def test_site_error_markers_apply_to_every_page_reading_check(
        clients: HttpClients, check: dict[str, Any], path: str) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"<html><body><main><p>{MARKER}</p></main></body></html>",
                            content_type="text/html")

    async with serve({path: page, "/": page}) as url:
        cfg = site_config(url, check, error_markers=[MARKER])
        result = await run_check(clients, cfg)
    assert kinds(result) == [K.PAGE_CORRUPTED], result.findings
    assert f"the error marker {MARKER!r}" in result.findings[0].summary


async def test_demo_store_corrupt_fault_is_page_corrupted_not_catalog_missing(
        store: DemoStore, clients: HttpClients) -> None:
    store.set_faults(["corrupt"])
    result = await run_check(clients, site_config(store.url, {
        **CATALOG, "pages": ["/category/tops", "/category/gear"]}))
    assert set(kinds(result)) == {K.PAGE_CORRUPTED}


@pytest.mark.parametrize("text", [
    pytest.param("<div id='app' v-cloak><p>{{ cart.count }} items</p></div>", id="vue"),
    pytest.param("<div ng-app='shop'><span>{{ price | currency }}</span></div>", id="angular"),
    pytest.param("<script type='text/x-template'>{{ name }} {% if x %}</script><p>ok</p>",
                 id="script-template"),
    pytest.param("<p>Use the code {SAVE10} at checkout</p>", id="braces"),
    pytest.param("<pre>{\"a\": {\"b\": 1}}</pre>", id="json"),
])
def test_client_side_templates_are_not_leaks(text: str) -> None:
    assert template_leak(text) is None
    assert error_signature(f"<html><body>{text}</body></html>") is None


async def test_check_writes_no_baselines_unless_given_a_state_dir(
        store: DemoStore, tmp_path: Path) -> None:
    daemon_dir = tmp_path / "daemon"
    daemon = BaselineStore.open(daemon_dir)
    assert daemon is not None
    daemon.add_count("demo", "catalog", 30.0, at=1.0)
    daemon.close()
    before = (daemon_dir / FILENAME).read_bytes()
    cfg = Config.model_validate({"agent": {"state_dir": str(daemon_dir)}, "sites": [
        {"name": "demo", "base_url": store.url, "checks": [
            {**CATALOG, "pages": ["/category/tops", "/category/bottoms", "/category/gear"]},
            {"name": "scripts", "type": "security", "pages": ["/checkout"]}]}]})
    observations = await check_once(cfg)
    assert all(o.result.success for o in observations), observations
    assert (daemon_dir / FILENAME).read_bytes() == before  # judged against it, not written
    explicit = tmp_path / "explicit"
    await check_once(cfg, state_dir=explicit)
    learned = BaselineStore.open(explicit)
    assert learned is not None
    assert len(learned.recent_counts("demo", "catalog", 10)) == 1
    assert learned.runs_counted("demo", "scripts") == 1
