"""Catalog (with its baseline), search/filter, integrity and skimmer detection over real sockets,
with real SQLite baselines in a temporary state directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.state.baselines import BaselineStore
from classifier import FindingKind
from tests.agent.commerce import kinds, one_check, run_check
from tests.agent.servers import serve

K = FindingKind
LISTINGS = ["/category/tops", "/category/bottoms", "/category/gear"]


@pytest.fixture
def baselines(tmp_path: Path) -> Iterator[BaselineStore]:
    store = BaselineStore.open(tmp_path / "state")
    assert store is not None
    yield store
    store.close()


def catalog(**extra: Any) -> dict[str, Any]:
    return {"name": "catalog", "type": "catalog", "pages": LISTINGS, **extra}


@pytest.mark.parametrize(("counter", "count"), [
    pytest.param({"css": "li.product-card"}, 30, id="css"),
    pytest.param({"json_ld": True}, 30, id="json-ld"),
    pytest.param({"regex": "class=\"product-card\""}, 30, id="regex"),
])
async def test_catalog_counts_listing_pages(store: DemoStore, clients: HttpClients,
                                            counter: dict[str, Any], count: int) -> None:
    result = await run_check(clients, one_check(store.url, catalog(count=counter)))
    assert result.success, result.findings
    assert result.measurements["products_listed"] == count


async def test_catalog_names_missing_skus_and_how_many_vanished(store: DemoStore,
                                                                clients: HttpClients) -> None:
    store.set_faults(["catalog"])
    cfg = one_check(store.url, catalog(min_count=30, expected=["DS-TOP-01", "DS-TOP-02",
                                                               "DS-TEST-SKU"]))
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.CATALOG_MISSING, K.CATALOG_MISSING]
    assert result.findings[0].summary == "1 expected product(s) missing: DS-TOP-02"
    assert result.findings[1].summary == ("18 products listed, expected at least 30 "
                                          "(12 missing)")
    assert result.findings[1].facts["vanished"] == 12


async def test_expected_products_can_be_found_in_the_sitemap(store: DemoStore,
                                                             clients: HttpClients) -> None:
    cfg = one_check(store.url, catalog(pages=["/category/gear"], expected=["atlas-daypack"],
                                       expected_in=["/sitemap.xml"]))
    assert (await run_check(clients, cfg)).success
    store.set_faults(["catalog"])  # position 1 (beacon-water-bottle) vanishes
    cfg = one_check(store.url, catalog(pages=["/category/gear"], expected=["beacon-water-bottle"],
                                       expected_in=["/sitemap.xml"]))
    assert kinds(await run_check(clients, cfg)) == [K.CATALOG_MISSING]


async def test_catalog_baseline_learns_then_reports_a_drop(store: DemoStore, clients: HttpClients,
                                                          baselines: BaselineStore) -> None:
    cfg = one_check(store.url, catalog(max_drop=0.3, baseline_runs=5))
    for _ in range(3):
        result = await run_check(clients, cfg, baselines=baselines)
        assert result.success, result.findings
    assert baselines.recent_counts("shop", "catalog", 10) == [30.0, 30.0, 30.0]
    store.set_faults(["catalog"])
    dropped = await run_check(clients, cfg, baselines=baselines)
    assert kinds(dropped) == [K.CATALOG_MISSING]
    assert dropped.findings[0].summary == ("18 products listed, 12 fewer than the recent "
                                           "median 30")
    assert dropped.findings[0].facts == {"count": 18.0, "vanished": 12.0}
    # Without a store the same drop goes unnoticed (min_count defaults to 1): it is the baseline.
    assert (await run_check(clients, cfg)).success


async def test_a_small_dip_is_within_the_allowed_drop(store: DemoStore, clients: HttpClients,
                                                     baselines: BaselineStore) -> None:
    for value in (31.0, 33.0, 32.0):
        baselines.add_count("shop", "catalog", value, at=value)
    cfg = one_check(store.url, catalog(max_drop=0.1))
    assert (await run_check(clients, cfg, baselines=baselines)).success  # 30 vs median 32


async def test_catalog_page_showing_an_error_is_page_corrupted_not_a_drop(
        store: DemoStore, clients: HttpClients, baselines: BaselineStore) -> None:
    store.set_faults(["corrupt"])
    result = await run_check(clients, one_check(store.url, catalog(min_count=30)),
                             baselines=baselines)
    assert kinds(result) == [K.PAGE_CORRUPTED] * 3
    assert baselines.recent_counts("shop", "catalog", 10) == []  # not a count to learn from


@pytest.mark.parametrize(("check_type", "fault", "expected"), [
    pytest.param("search", None, [], id="search-ok"),
    pytest.param("search", "search", [K.SEARCH_BROKEN, K.SEARCH_BROKEN], id="search-broken"),
    pytest.param("filter", "search", [K.FILTER_BROKEN, K.FILTER_BROKEN], id="filter-broken"),
    pytest.param("search", "corrupt", [K.PAGE_CORRUPTED, K.PAGE_CORRUPTED], id="search-corrupt"),
])
async def test_search_and_filter(store: DemoStore, clients: HttpClients, check_type: str,
                                 fault: str | None, expected: list[FindingKind]) -> None:
    store.set_faults([fault] if fault else [])
    cfg = one_check(store.url, {
        "name": "s", "type": check_type, "count": {"css": "li.product-card"},
        "queries": [{"path": "/search?q=tee", "min_results": 4, "expected": "DS-TOP-09"},
                    {"term": "jacket", "min_results": 2}]})
    result = await run_check(clients, cfg)
    assert kinds(result) == expected, result.findings


async def test_search_expected_sku_must_be_among_results(store: DemoStore,
                                                         clients: HttpClients) -> None:
    cfg = one_check(store.url, {"name": "s", "type": "search", "queries": [
        {"path": "/search?q=tee", "expected": "DS-BOT-01"}]})
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.SEARCH_BROKEN]
    assert "DS-BOT-01 is not among the 4 results" in result.findings[0].summary


def integrity(**extra: Any) -> dict[str, Any]:
    return {"name": "integrity", "type": "integrity", **extra}


async def test_integrity_healthy_and_corrupt(store: DemoStore, clients: HttpClients) -> None:
    cfg = one_check(store.url, integrity(pages=["/", "/category/gear"],
                                         main_selector="main#maincontent"))
    healthy = await run_check(clients, cfg)
    assert healthy.success, healthy.findings
    assert healthy.measurements["assets_checked"] == 2  # styles.css and app.js, once each
    store.set_faults(["corrupt"])
    broken = await run_check(clients, cfg)
    assert kinds(broken) == [K.PAGE_CORRUPTED, K.PAGE_CORRUPTED]
    assert broken.findings[0].summary == (
        "page /: shows a Magento error; 'main#maincontent' is empty; "
        "stylesheet /static/styles-v2.css does not load (HTTP 404)")


@pytest.mark.parametrize(("body", "signature"), [
    pytest.param("<b>Fatal error</b>: Uncaught Error: Call to undefined function foo() in "
                 "/var/www/app/code/Foo.php:12", "a PHP error", id="php-fatal"),
    pytest.param("<p>There has been a critical error on this website.</p>", "a WordPress error",
                 id="wordpress"),
    pytest.param("Liquid error: Could not find asset snippets/price.liquid",
                 "a Shopify Liquid error", id="shopify-liquid"),
    pytest.param("<pre>Traceback (most recent call last):\n  File \"app.py\"</pre>",
                 "a framework debug page error", id="python-debug"),
    pytest.param("<p>An error has happened during application run. See exception log for "
                 "details.</p>", "a Magento error", id="magento-bootstrap"),
    pytest.param("<h1>TemplateSyntaxError at /category/</h1><p>You're seeing this error because "
                 "you have <code>DEBUG = True</code> in your settings</p>", "a Django error",
                 id="django-debug"),
    pytest.param("<pre>jinja2.exceptions.UndefinedError: 'product' is undefined</pre>",
                 "a Jinja error", id="jinja"),
    pytest.param("<p>Twig\\Error\\RuntimeError: Variable \"product\" does not exist</p>",
                 "a Twig error", id="twig"),
    pytest.param("<h1>We're sorry, but something went wrong.</h1>", "a Rails error",
                 id="rails-500"),
    pytest.param("<ul>{% for product in products %}<li>{{ product.name }}</li>{% endfor %}</ul>",
                 "a raw template tag '{% for product in products %}'", id="template-block"),
    pytest.param("<h2>{{ product.title | escape }}</h2>",
                 "a raw template tag '{{ product.title | escape }}'", id="template-variable"),
    pytest.param("<h1>Under maintenance</h1>", "the error marker 'Under maintenance'",
                 id="extra-marker"),
])
async def test_integrity_error_signatures(clients: HttpClients, body: str,
                                          signature: str) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"<html><body><main>{body}</main></body></html>",
                            content_type="text/html")

    async with serve({"/": page}) as url:
        cfg = one_check(url, integrity(error_markers=["Under maintenance"]))
        result = await run_check(clients, cfg)
    assert kinds(result) == [K.PAGE_CORRUPTED]
    assert result.findings[0].summary == f"page /: shows {signature}"


async def test_assets_are_bounded_and_fetched_once_per_run(clients: HttpClients) -> None:
    hits: dict[str, int] = {}
    links = "".join(f'<link rel="stylesheet" href="/a{i}.css">' for i in range(10))
    scripts = '<script src="https://cdn.other.example/x.js"></script>'  # other host: not fetched

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"<html><head>{links}{scripts}</head><main>ok</main></html>",
                            content_type="text/html")

    async def asset(request: web.Request) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        if request.path == "/a1.css":
            return web.Response(status=404)
        return web.Response(body=b"x" * 1_000_000, content_type="text/css")  # capped read

    async with serve({"/": page, "/p2": page, "/{name}.css": asset}) as url:
        cfg = one_check(url, integrity(pages=["/", "/p2"], max_assets=3))
        result = await run_check(clients, cfg)
    assert hits == {"/a0.css": 1, "/a1.css": 1, "/a2.css": 1}
    assert kinds(result) == [K.PAGE_CORRUPTED, K.PAGE_CORRUPTED]
    assert "stylesheet /a1.css does not load (HTTP 404)" in result.findings[0].summary


async def test_pages_failing_while_home_works_is_partial_outage(store: DemoStore,
                                                                clients: HttpClients) -> None:
    cfg = one_check(store.url, integrity(pages=["/category/gear", "/category/nope"]))
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.PARTIAL_OUTAGE]
    assert "/category/nope: HTTP 404" in result.findings[0].summary


def security(**extra: Any) -> dict[str, Any]:
    return {"name": "scripts", "type": "security", "pages": ["/cart", "/checkout"], **extra}


async def test_skimmer_is_detected_from_the_first_run_with_an_allowlist(
        store: DemoStore, clients: HttpClients, baselines: BaselineStore) -> None:
    cfg = one_check(store.url, security(allow=["self"], learn_runs=0))
    assert (await run_check(clients, cfg, baselines=baselines)).success
    store.set_faults(["skimmer"])
    result = await run_check(clients, cfg, baselines=baselines)
    assert kinds(result) == [K.SECURITY_BREACH, K.SECURITY_BREACH]
    assert [f.summary for f in result.findings] == [
        "script from unknown origin https://cdn.jsdelivr-analytics.example on /cart, /checkout",
        "script from unknown origin https://pay-verify.example on /cart, /checkout",  # inline
    ]


async def test_allowlist_entries(store: DemoStore, clients: HttpClients) -> None:
    store.set_faults(["skimmer"])
    cfg = one_check(store.url, security(
        allow=["https://cdn.jsdelivr-analytics.example", "*.example"], learn_runs=0))
    assert (await run_check(clients, cfg)).success


async def test_first_runs_learn_later_new_origins_are_findings(
        store: DemoStore, clients: HttpClients, baselines: BaselineStore) -> None:
    cfg = one_check(store.url, security(learn_runs=2))
    store.set_faults(["skimmer"])  # present while learning: becomes part of the baseline
    for _ in range(2):
        assert (await run_check(clients, cfg, baselines=baselines)).success
    assert baselines.origins("shop", "scripts") == {"https://cdn.jsdelivr-analytics.example",
                                                    "https://pay-verify.example"}
    assert (await run_check(clients, cfg, baselines=baselines)).success  # learned: no finding


async def test_new_origin_after_learning_is_a_breach(store: DemoStore, clients: HttpClients,
                                                    baselines: BaselineStore) -> None:
    cfg = one_check(store.url, security(learn_runs=1))
    assert (await run_check(clients, cfg, baselines=baselines)).success  # learns own scripts
    store.set_faults(["skimmer"])
    result = await run_check(clients, cfg, baselines=baselines)
    assert kinds(result) == [K.SECURITY_BREACH, K.SECURITY_BREACH]


async def test_defacement_marker(clients: HttpClients) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<h1>HACKED BY n00b</h1>", content_type="text/html")

    async with serve({"/": page}) as url:
        result = await run_check(clients, one_check(url, {"name": "s", "type": "security"}))
    assert kinds(result) == [K.SECURITY_BREACH]
    assert result.findings[0].summary == "defacement text 'hacked by' on /"
