"""A slow shop is slow, not broken (issue 11.1): request timeout vs check budget, latency
thresholds of pages and steps, the slow-checkout bound. Real sockets against the demo store with
its ``slow`` fault (every storefront response delayed by ``slow_delay_s``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agent.config.schema import (
    DEFAULT_CHECK_BUDGET_S,
    DEFAULT_LATENCY_THRESHOLD_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    Config,
)
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from classifier import FindingKind
from classifier.classify import SiteContext, classify
from tests.agent.commerce import kinds, one_check, run_check
from tests.agent.servers import serve

K = FindingKind
PRODUCT = "/product/demo-test-product"


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()


def checkout(**extra: Any) -> dict[str, Any]:
    """The demo's HTML checkout as steps (four requests, one cookie jar)."""
    return {"name": "checkout", "type": "checkout", "vars": {"sku": "DS-TEST-SKU"}, "steps": [
        {"name": "product-page", "path": PRODUCT,
         "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"}}},
        {"name": "add-to-cart", "method": "POST", "path": "/cart/add",
         "form": {"form_key": "{{form_key}}", "sku": "{{sku}}", "qty": "1"},
         "expect": {"count": [{"css": "tr.cart-item[data-sku='DS-TEST-SKU']", "min": 1}]}},
        {"name": "checkout-page", "path": "/checkout",
         "expect": {"selector": ["#co-shipping-method-form"]}},
    ], "payment": {"css": "div.payment-method", "attribute": "data-code"}, **extra}


def test_defaults_suit_real_shops() -> None:
    cfg = one_check("http://shop.test", {"name": "home"})
    planned = cfg.planned_checks()[0]
    assert (planned.interval, planned.timeout, planned.request_timeout) == (
        60.0, DEFAULT_CHECK_BUDGET_S, DEFAULT_REQUEST_TIMEOUT_S)
    assert DEFAULT_REQUEST_TIMEOUT_S < DEFAULT_CHECK_BUDGET_S < planned.interval
    fast = Config.model_validate({"defaults": {"interval": "20s"}, "sites": [
        {"name": "s", "base_url": "http://shop.test", "checks": [{"name": "home"}]}]})
    planned = fast.planned_checks()[0]
    assert planned.timeout == 15.0 and planned.request_timeout == 15.0  # 75 % of the interval


def test_request_timeout_and_budget_resolve_check_site_defaults() -> None:
    cfg = Config.model_validate({
        "defaults": {"request_timeout": "20s", "timeout": "50s"},
        "sites": [{"name": "s", "base_url": "http://shop.test", "request_timeout": "12s",
                   "checks": [{"name": "home"},
                              {"name": "co", "type": "checkout", "timeout": "55s",
                               "request_timeout": "40s",
                               "steps": [{"name": "a", "path": "/"}]},
                              {"name": "tight", "timeout": "5s"}]}]})
    got = {p.check.name: (p.timeout, p.request_timeout) for p in cfg.planned_checks()}
    assert got == {"home": (50.0, 12.0), "co": (55.0, 40.0), "tight": (5.0, 5.0)}


async def test_slow_steps_are_slow_response_not_checkout_broken(
        store: DemoStore, clients: HttpClients) -> None:
    store.slow_delay_s = 0.4
    store.set_faults(["slow"])
    cfg = one_check(store.url, checkout(latency_threshold="0.3s"))
    result = await run_check(clients, cfg, timeout=8.0, request_timeout=3.0)
    assert kinds(result) == [K.SLOW_RESPONSE]
    summary = result.findings[0].summary
    for step in ("product-page", "add-to-cart", "checkout-page"):
        assert f"step '{step}' took" in summary
    assert "(threshold 0.3s)" in summary
    assert [classify(f, SiteContext("shop")).level for f in result.findings] == [3]


async def test_budget_used_up_by_slow_steps_is_slow_not_broken(
        store: DemoStore, clients: HttpClients) -> None:
    """The issue's 4 s shop: earlier slow steps use the budget; the step cut short is slow."""
    store.slow_delay_s = 0.6
    store.set_faults(["slow"])
    cfg = one_check(store.url, checkout(degraded_after=None))
    result = await run_check(clients, cfg, timeout=1.5, request_timeout=1.0)
    assert kinds(result) == [K.SLOW_RESPONSE]
    summary = result.findings[0].summary
    assert "check budget 1.5s (timeout) used up" in summary
    assert "step 'add-to-cart'" in summary or "step 'checkout-page'" in summary
    assert "0.05s" not in summary


async def test_slow_checkout_past_its_bound_is_business_logic_degraded(
        store: DemoStore, clients: HttpClients) -> None:
    store.slow_delay_s = 0.3
    store.set_faults(["slow"])
    cfg = one_check(store.url, checkout(degraded_after="0.6s", latency_threshold="5s"))
    result = await run_check(clients, cfg, timeout=8.0, request_timeout=3.0)
    assert kinds(result) == [K.BUSINESS_LOGIC_DEGRADED]
    finding = result.findings[0]
    assert "degraded_after 0.6s" in finding.summary and "3 steps" in finding.summary
    assert classify(finding, SiteContext("shop")).level == 2


async def test_a_step_past_its_own_request_timeout_is_broken(
        store: DemoStore, clients: HttpClients) -> None:
    store.set_faults(["down"])
    cfg = one_check(store.url, checkout())
    result = await run_check(clients, cfg, timeout=3.0, request_timeout=0.5)
    assert kinds(result) == [K.CHECKOUT_BROKEN]
    assert result.findings[0].summary == (
        "step 'product-page': no complete response within the request timeout of 0.5s")


async def test_healthy_checkout_has_no_timing_findings(store: DemoStore,
                                                       clients: HttpClients) -> None:
    result = await run_check(clients, one_check(store.url, checkout()))
    assert result.success, result.findings


@pytest.mark.parametrize(("check", "kind_if_broken"), [
    pytest.param({"name": "cat", "type": "catalog", "count": {"css": "li.product-card"},
                  "pages": ["/category/tops", "/category/bottoms", "/category/gear"],
                  "min_count": 1}, K.CATALOG_MISSING, id="catalog"),
    pytest.param({"name": "integrity", "type": "integrity",
                  "pages": ["/", "/category/gear", "/product/atlas-daypack"],
                  "check_assets": False}, K.PARTIAL_OUTAGE, id="integrity"),
    pytest.param({"name": "search", "type": "search",
                  "queries": [{"path": "/search?q=tee"}, {"path": "/search?q=jacket"},
                              {"path": "/search?q=bag"}]}, K.SEARCH_BROKEN, id="search"),
    pytest.param({"name": "scripts", "type": "security", "allow": ["self"], "learn_runs": 0,
                  "pages": [PRODUCT, "/cart", "/checkout"]}, K.PARTIAL_OUTAGE, id="security"),
])
async def test_page_checks_on_a_slow_shop_are_slow_only(
        store: DemoStore, clients: HttpClients, check: dict[str, Any],
        kind_if_broken: FindingKind) -> None:
    """Three pages of 0.5 s with a 1.2 s budget: the last one is cut by the budget."""
    store.slow_delay_s = 0.5
    store.set_faults(["slow"])
    result = await run_check(clients, one_check(store.url, {**check, "latency_threshold": "0.4s"}),
                             timeout=1.2, request_timeout=1.0)
    assert kinds(result) == [K.SLOW_RESPONSE], result.findings
    summary = result.findings[0].summary
    assert "(threshold 0.4s)" in summary
    assert "check budget 1.2s (timeout) used up" in summary


async def test_page_past_its_request_timeout_is_broken(clients: HttpClients) -> None:
    async def home(request: web.Request) -> web.Response:
        return web.Response(text="<html><main>home</main></html>", content_type="text/html")

    async def hangs(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    async with serve({"/": home, "/category/gear": hangs}) as url:
        check = {"name": "integrity", "type": "integrity", "pages": ["/category/gear"],
                 "check_assets": False}
        result = await run_check(clients, one_check(url, check), timeout=3.0,
                                 request_timeout=0.5)
    # The home page works, so the failing page is a partial outage, named with its limit.
    assert kinds(result) == [K.PARTIAL_OUTAGE]
    assert "/category/gear: no complete response within the request timeout of 0.5s" in \
        result.findings[0].summary


def test_default_latency_threshold_applies_to_pages_and_steps() -> None:
    cfg = one_check("http://shop.test", checkout())
    spec = cfg.sites[0].checks[0]
    assert spec.latency_threshold == DEFAULT_LATENCY_THRESHOLD_S
    assert one_check("http://shop.test", {"name": "home"}).sites[0].checks[0] \
        .latency_threshold == DEFAULT_LATENCY_THRESHOLD_S
