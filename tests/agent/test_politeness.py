"""Per-site politeness (issue 11.2): at most ``max_in_flight`` requests in flight per site, the
home check served first, a site's checks spread over the interval, waits measured; a fragile
shop (the demo store's ``fragile`` fault: a third concurrent request gets "database is locked")
gives no findings on healthy runs, and does when the limit is lifted (so the test can fail)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.config.schema import Config
from agent.demo.storefront import FRAGILE_LIMIT, DemoStore
from agent.httpclient import HttpClients
from agent.politeness import (
    CHECK_PRIORITY,
    CHECK_STAGGER_S,
    HOME_PRIORITY,
    Politeness,
    SiteGate,
    first_run_offset,
    stagger,
)
from agent.probes import PROBES
from agent.probes.base import ProbeContext, run_guarded
from agent.scheduler import _spread_by_site
from agent.service import check_once
from tests.agent.servers import serve


async def test_gate_never_exceeds_its_limit_and_counts_waits() -> None:
    gate = SiteGate(2)
    peak = 0

    async def request() -> None:
        nonlocal peak
        async with gate.slot():
            peak = max(peak, gate.in_flight)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(request() for _ in range(10)))
    assert peak == 2
    assert gate.in_flight == 0
    assert gate.waited_s > 0


async def test_home_check_is_served_before_queued_checks() -> None:
    gate = SiteGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await release.wait()

    async def request(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)

    hold = asyncio.create_task(holder())
    await asyncio.sleep(0)
    queued = [asyncio.create_task(request(f"check-{i}", CHECK_PRIORITY)) for i in range(3)]
    await asyncio.sleep(0)
    queued.append(asyncio.create_task(request("home", HOME_PRIORITY)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(hold, *queued)
    assert order == ["home", "check-0", "check-1", "check-2"]


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    gate = SiteGate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await release.wait()

    async def waiter() -> None:
        async with gate.slot():
            pass

    hold = asyncio.create_task(holder())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await hold
    await asyncio.gather(doomed, return_exceptions=True)
    async with asyncio.timeout(1):
        async with gate.slot():
            assert gate.in_flight == 1
    assert gate.in_flight == 0


def test_wait_metric_is_exported_per_site() -> None:
    politeness = Politeness()
    politeness.gate("shop", 2).waited_s = 1.5
    registry = CollectorRegistry()
    registry.register(politeness.collector())
    assert registry.get_sample_value("storewatch_site_wait_seconds_total",
                                     {"site": "shop"}) == 1.5
    assert registry.get_sample_value("storewatch_site_requests_in_flight",
                                     {"site": "shop"}) == 0.0


def test_a_sites_checks_start_spread_over_the_interval() -> None:
    offsets = sorted(first_run_offset("shop", i, 4, 60.0) for i in range(4))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(abs(g - 15.0) < 1e-6 for g in gaps)
    assert offsets == sorted(first_run_offset("shop", i, 4, 60.0) for i in range(4))  # stable
    cfg = Config.model_validate({"sites": [
        {"name": "a", "base_url": "http://a.test",
         "checks": [{"name": f"c{i}", "path": f"/{i}"} for i in range(6)]},
        {"name": "b", "base_url": "http://b.test", "checks": [{"name": "home"}]}]})
    spread = _spread_by_site(cfg.planned_checks())
    site_a = sorted(v for k, v in spread.items() if k.startswith("a/"))
    assert min(b - a for a, b in itertools.pairwise(site_a)) == pytest.approx(10.0)


def test_storewatch_check_staggers_a_sites_checks() -> None:
    assert stagger(["a", "a", "b", "a", "b"]) == [0.0, CHECK_STAGGER_S, 0.0,
                                                   2 * CHECK_STAGGER_S, CHECK_STAGGER_S]


def fragile_config(url: str, max_in_flight: int | None = None) -> Config:
    site: dict[str, object] = {"name": "demo", "base_url": url, "checks": [
        {"name": "home", "selector": "main#maincontent"},
        {"name": "category", "path": "/category/tops", "selector": "li.product-card"},
        {"name": "checkout", "type": "checkout", "vars": {"sku": "DS-TEST-SKU"}, "steps": [
            {"name": "product-page", "path": "/product/demo-test-product",
             "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"}}},
            {"name": "add-to-cart", "method": "POST", "path": "/cart/add",
             "form": {"form_key": "{{form_key}}", "sku": "{{sku}}", "qty": "1"}},
            {"name": "checkout-page", "path": "/checkout",
             "expect": {"selector": ["#co-shipping-method-form"]}}],
         "payment": {"css": "div.payment-method", "attribute": "data-code"}},
        {"name": "guest-cart-api", "type": "checkout", "steps": [
            {"name": "create-cart", "method": "POST", "path": "/rest/V1/guest-carts",
             "extract": {"cart_id": {"json": "$"}}},
            {"name": "payment-methods",
             "path": "/rest/V1/guest-carts/{{cart_id}}/payment-methods"}],
         "payment": {"json": "$[*].code"}},
        {"name": "catalog", "type": "catalog", "count": {"css": "li.product-card"},
         "pages": ["/category/tops", "/category/bottoms", "/category/gear"], "min_count": 30},
        {"name": "search", "type": "search", "queries": [{"path": "/search?q=tee"},
                                                         {"path": "/search?q=jacket"}]},
        {"name": "integrity", "type": "integrity",
         "pages": ["/", "/category/gear", "/product/atlas-daypack"],
         "main_selector": "main#maincontent"},
        {"name": "scripts", "type": "security", "allow": ["self"], "learn_runs": 0,
         "pages": ["/product/demo-test-product", "/cart", "/checkout"]},
    ]}
    if max_in_flight is not None:
        site["max_in_flight"] = max_in_flight
    return Config.model_validate({"agent": {"state_dir": "/nonexistent/storewatch-test"},
                                  "defaults": {"interval": "30s", "timeout": "20s"},
                                  "sites": [site]})


@pytest.mark.slow
async def test_healthy_runs_on_a_fragile_shop_give_no_findings(store: DemoStore,
                                                               tmp_path: Path) -> None:
    store.set_faults(["fragile"])
    assert FRAGILE_LIMIT == 2
    for _ in range(3):
        observations = await check_once(fragile_config(store.url))
        findings = [f for o in observations for f in o.result.findings]
        assert findings == []
    assert store.fragile_rejections == 0


@pytest.mark.slow
async def test_without_the_limit_the_fragile_shop_fails_requests(store: DemoStore) -> None:
    store.set_faults(["fragile"])
    findings = []
    for _ in range(3):
        observations = await check_once(fragile_config(store.url, max_in_flight=10))
        findings += [f for o in observations for f in o.result.findings]
        if store.fragile_rejections:
            break
    assert store.fragile_rejections > 0
    assert findings


async def test_queueing_for_a_slot_does_not_use_the_checks_budget() -> None:
    """max_in_flight 1, two checks of 0.6 s pages with a 1 s budget each: the second waits for
    the first, and still has its whole budget (and deadline) for its own request."""
    async def slow_page(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text="<html><main>ok</main></html>", content_type="text/html")

    clients = HttpClients("storewatch-test")
    try:
        async with serve({"/a": slow_page, "/b": slow_page}) as url:
            cfg = Config.model_validate({"sites": [{
                "name": "shop", "base_url": url, "max_in_flight": 1, "checks": [
                    {"name": "a", "path": "/a", "role": "page"},
                    {"name": "b", "path": "/b", "role": "page"}]}]})
            site = cfg.sites[0]
            results = await asyncio.gather(*(
                run_guarded(PROBES["availability"], spec, ProbeContext(clients, site, 1.0))
                for spec in site.checks))
        waited = clients.politeness.waited_seconds()["shop"]
    finally:
        await clients.aclose()
    assert [r.findings for r in results] == [(), ()]
    assert waited >= 0.4


async def test_a_wait_longer_than_the_deadline_never_cancels_the_queued_check() -> None:
    """max_in_flight 1, four checks of 0.6 s pages with a 1 s budget (deadline 1.5 s): the last
    one queues ~1.8 s, longer than its whole deadline. The wait stops its deadline, so it is
    neither cancelled nor reported (before: "did not finish by its deadline", the check's own
    failure kind: a false checkout_broken L1 on a slow shop with several checks)."""
    async def slow_page(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text="<html><main>ok</main></html>", content_type="text/html")

    names = ["a", "b", "c", "d"]
    clients = HttpClients("storewatch-test")
    try:
        async with serve({f"/{n}": slow_page for n in names}) as url:
            cfg = Config.model_validate({"sites": [{
                "name": "shop", "base_url": url, "max_in_flight": 1, "checks": [
                    {"name": n, "path": f"/{n}", "role": "page"} for n in names]}]})
            site = cfg.sites[0]
            results = await asyncio.gather(*(
                run_guarded(PROBES["availability"], spec, ProbeContext(clients, site, 1.0))
                for spec in site.checks))
        waited = clients.politeness.waited_seconds()["shop"]
    finally:
        await clients.aclose()
    assert [r.findings for r in results] == [(), (), (), ()]
    assert waited >= 1.5


@pytest.mark.slow
async def test_a_slow_shop_with_every_check_queued_gives_only_slow_response(
        store: DemoStore) -> None:
    """The demo's own pace (4 s budget) on a shop answering each request after 1.5 s, with every
    check of the site run at once behind the default 2 slots: queued checks (the integrity
    check's parallel asset fetches among them) are never cancelled by their deadline, so no
    checkout_broken L1 or partial_outage L2 appears; the only kind is slow_response."""
    store.slow_delay_s = 1.5
    store.set_faults(["slow"])
    cfg = fragile_config(store.url)
    cfg = cfg.model_copy(update={"defaults": cfg.defaults.model_copy(
        update={"interval": 5.0, "timeout": 4.0})})
    observations = await check_once(cfg)
    findings = [f for o in observations for f in o.result.findings]
    assert findings, "the slow fault must show"
    assert {f.kind.value for f in findings} == {"slow_response"}, [
        (f.check, f.summary) for f in findings]
    assert not [f for f in findings if "deadline" in f.summary]
