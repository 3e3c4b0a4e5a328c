"""The step engine over real sockets against the demo store: extractors, assertions, cookies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from classifier import FindingKind
from tests.agent.commerce import kinds, one_check, run_check
from tests.agent.servers import serve

K = FindingKind


def steps_check(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "flow", "type": "checkout", "steps": list(steps), **extra}


PRODUCT = "/product/demo-test-product"

# Each extractor captures a value that a second step must echo back to pass.
EXTRACTORS = [
    pytest.param({"css": "input[name=sku]", "attribute": "value"}, PRODUCT, "DS-TEST-SKU",
                 id="css-attribute"),
    pytest.param({"css": "span.sku"}, PRODUCT, "DS-TEST-SKU", id="css-text"),
    pytest.param({"json": "$.sku"}, "/review/product/DS-TEST-SKU", "DS-TEST-SKU", id="json"),
    pytest.param({"json": "$.exchange_rates[0].currency_to"}, "/rest/V1/directory/currency",
                 "USD", id="json-index"),
    pytest.param({"regex": r"SKU: <span class=\"sku\">([A-Z-]+)</span>"}, PRODUCT,
                 "DS-TEST-SKU", id="regex-group"),
    pytest.param({"header": "Cache-Control"}, "/static/app.js", "public, max-age=300",
                 id="header"),
]


@pytest.mark.parametrize(("extractor", "path", "value"), EXTRACTORS)
async def test_each_extractor_feeds_the_next_step(store: DemoStore, clients: HttpClients,
                                                  extractor: dict[str, Any], path: str,
                                                  value: str) -> None:
    cfg = one_check(store.url, steps_check(
        {"name": "read", "path": path, "extract": {"got": extractor}},
        {"name": "echo", "path": "/search", "query": {"q": "{{got}}"},
         "expect": {"contains": [f"Search results for: &#x27;{value}&#x27;"]}},
    ))
    result = await run_check(clients, cfg)
    assert result.success, result.findings
    assert [s.name for s in result.steps] == ["read", "echo"]


async def test_cookie_extractor_and_one_jar_per_run(store: DemoStore,
                                                    clients: HttpClients) -> None:
    # The form_key belongs to the session cookie: it only works when the cookie flows.
    cfg = one_check(store.url, steps_check(
        {"name": "product", "path": PRODUCT,
         "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"},
                     "session": {"cookie": "demo_session"}}},
        {"name": "add", "method": "POST", "path": "/cart/add",
         "form": {"form_key": "{{form_key}}", "sku": "DS-TEST-SKU", "qty": "1"},
         "expect": {"count": [{"css": "tr.cart-item", "min": 1}]}},
        {"name": "cart", "path": "/cart", "headers": {"X-Session-Seen": "{{session}}"},
         "expect": {"selector": ["tr.cart-item[data-sku='DS-TEST-SKU']"]}},
    ))
    first = await run_check(clients, cfg)
    assert first.success, first.findings
    # A second run starts with an empty jar: its cart holds one line again, not two.
    second = await run_check(clients, cfg)
    assert second.success, second.findings
    assert len(store._shop.sessions) == 2


async def test_without_the_cookie_the_form_key_is_rejected(store: DemoStore,
                                                           clients: HttpClients) -> None:
    cfg = one_check(store.url, steps_check(
        {"name": "product", "path": PRODUCT,
         "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"}}},
        {"name": "add", "method": "POST", "path": "/cart/add",
         "headers": {"Cookie": "demo_session=someone-else"},
         "form": {"form_key": "{{form_key}}", "sku": "DS-TEST-SKU"}},
    ))
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.CHECKOUT_BROKEN]
    assert "step 'add': HTTP 403" in result.findings[0].summary


ASSERTIONS = [
    pytest.param("/", {"status": [200]}, {"status": [201]}, "HTTP 200 (expected 201)",
                 id="status"),
    pytest.param("/", {"contains": ["Demo Outfitters"]}, {"contains": ["Nope Inc"]},
                 "missing text 'Nope Inc'", id="contains"),
    pytest.param("/", {"not_contains": ["Fatal"]}, {"not_contains": ["Featured"]},
                 "unwanted text 'Featured'", id="not-contains"),
    pytest.param("/", {"matches": [r"Welcome to \w+"]}, {"matches": [r"Goodbye \d+"]},
                 r"no match for /Goodbye \d+/", id="regex"),
    pytest.param("/", {"selector": ["main#maincontent"]}, {"selector": ["div.nope"]},
                 "no element matches 'div.nope'", id="selector"),
    pytest.param("/rest/V1/directory/currency",
                 {"json": [{"path": "$.base_currency_code", "equals": "USD"}]},
                 {"json": [{"path": "$.base_currency_code", "equals": "EUR"}]},
                 "$.base_currency_code is USD, expected EUR", id="json-equals"),
    pytest.param("/rest/V1/directory/currency",
                 {"json": [{"path": "$.exchange_rates[0].rate", "min": 1}]},
                 {"json": [{"path": "$.exchange_rates[0].rate", "min": 2}]},
                 "expected at least 2", id="json-min"),
    pytest.param("/rest/V1/directory/currency", {"json": [{"path": "$.available_currency_codes"}]},
                 {"json": [{"path": "$.nope"}]}, "no JSON value at $.nope", id="json-exists"),
    pytest.param("/category/tops", {"count": [{"css": "li.product-card", "min": 12}]},
                 {"count": [{"css": "li.product-card", "min": 13}]},
                 "found 12 items, expected at least 13", id="count-css"),
    pytest.param("/category/tops", {"count": [{"json_ld": True, "min": 12}]},
                 {"count": [{"json_ld": True, "min": 13}]}, "found 12 items", id="count-json-ld"),
    pytest.param("/category/gear", {"count": [{"regex": "data-sku=", "min": 8}]},
                 {"count": [{"regex": "data-sku=", "min": 9}]}, "found 8 items",
                 id="count-regex"),
    pytest.param("/rest/V1/directory/currency",
                 {"count": [{"json": "$.available_currency_codes[*]", "min": 1}]},
                 {"count": [{"json": "$.available_currency_codes[*]", "min": 2}]},
                 "found 1 items", id="count-json"),
]


@pytest.mark.parametrize(("path", "passing", "failing", "problem"), ASSERTIONS)
async def test_each_assertion_passes_and_fails(store: DemoStore, clients: HttpClients, path: str,
                                               passing: dict[str, Any], failing: dict[str, Any],
                                               problem: str) -> None:
    ok = await run_check(clients, one_check(store.url, steps_check(
        {"name": "s", "path": path, "expect": passing})))
    assert ok.success, ok.findings
    bad = await run_check(clients, one_check(store.url, steps_check(
        {"name": "s", "path": path, "expect": failing})))
    assert kinds(bad) == [K.CHECKOUT_BROKEN]
    assert problem in bad.findings[0].summary


async def test_count_by_header(clients: HttpClients) -> None:
    async def products(request: web.Request) -> web.Response:
        return web.json_response([], headers={"X-WP-Total": "42"})

    async with serve({"/products": products}) as url:
        check = steps_check({"name": "s", "path": "/products",
                             "expect": {"count": [{"header": "X-WP-Total", "min": 43}]}})
        result = await run_check(clients, one_check(url, check))
    assert "found 42 items, expected at least 43" in result.findings[0].summary


async def test_submit_form_posts_the_hidden_inputs(store: DemoStore, clients: HttpClients) -> None:
    cfg = one_check(store.url, steps_check(
        {"name": "product", "path": PRODUCT},
        {"name": "add", "submit_form": "form#product_addtocart_form", "form": {"qty": "2"}},
    ))
    result = await run_check(clients, cfg)
    assert result.success, result.findings
    session = next(iter(store._shop.sessions.values()))
    assert session.cart == {"DS-TEST-SKU": 2}


async def test_step_kind_and_continue_on_failure(store: DemoStore, clients: HttpClients) -> None:
    cfg = one_check(store.url, steps_check(
        {"name": "shipping", "method": "POST", "path": "/checkout/estimate-shipping",
         "json": {"country_id": "US"}, "expect": {"count": [{"json": "$[*]", "min": 1}]},
         "kind": "business_logic_degraded", "continue_on_failure": True},
        {"name": "missing", "path": "/nope"},
        {"name": "never", "path": "/"},
    ))
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.BUSINESS_LOGIC_DEGRADED, K.CHECKOUT_BROKEN]
    assert [s.name for s in result.steps] == ["shipping", "missing"]


async def test_error_template_instead_of_content_is_page_corrupted(
        store: DemoStore, clients: HttpClients) -> None:
    store.set_faults(["corrupt"])
    cfg = one_check(store.url, steps_check(
        {"name": "product", "path": PRODUCT,
         "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"}}}))
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.PAGE_CORRUPTED]
    assert "could not extract 'form_key'" in result.findings[0].summary
    assert "Magento error" in result.findings[0].summary


async def test_unreachable_step_is_the_steps_kind(clients: HttpClients) -> None:
    from tests.agent.servers import free_port

    port = await free_port()
    check = steps_check({"name": "s", "path": "/"}, kind="minor_feature_broken")
    result = await run_check(clients, one_check(f"http://127.0.0.1:{port}", check))
    assert kinds(result) == [K.MINOR_FEATURE_BROKEN]
    assert "connection failed" in result.findings[0].summary


async def test_cookies_never_go_to_another_host(clients: HttpClients) -> None:
    seen: dict[str, str | None] = {}

    async def other(request: web.Request) -> web.Response:
        seen["cookie"] = request.headers.get("Cookie")
        return web.Response(text="other")

    async with serve({"/": other}) as other_url:
        async def login(request: web.Request) -> web.Response:
            response = web.Response(status=302, headers={"Location": other_url + "/"})
            response.set_cookie("sid", "secret-session")
            return response

        async def home(request: web.Request) -> web.Response:
            seen["own"] = request.headers.get("Cookie")
            return web.Response(text="home")

        async with serve({"/login": login, "/home": home}) as url:
            # 127.0.0.1 vs localhost: different hosts for the jar
            url = url.replace("127.0.0.1", "localhost")
            check = steps_check({"name": "login", "path": "/login"},
                                {"name": "home", "path": "/home"})
            result = await run_check(clients, one_check(url, check))
    assert result.success, result.findings
    assert seen == {"cookie": None, "own": "sid=secret-session"}


async def test_each_page_is_parsed_once(store: DemoStore, clients: HttpClients,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Extractor, selector, submit_form, count and both method lists read the parse of their page.
    import selectolax.lexbor

    parsed: list[str] = []
    real_parser = selectolax.lexbor.LexborHTMLParser

    def counting_parser(html: str) -> Any:
        parsed.append(html)
        return real_parser(html)

    cfg = one_check(store.url, steps_check(
        {"name": "product", "path": PRODUCT,
         "extract": {"form_key": {"css": "input[name=form_key]", "attribute": "value"}},
         "expect": {"selector": ["form#product_addtocart_form"]}},
        {"name": "add", "submit_form": "form#product_addtocart_form",
         "expect": {"count": [{"css": "tr.cart-item", "min": 1}]}},
        {"name": "checkout", "path": "/checkout",
         "expect": {"selector": ["#co-shipping-method-form"]}},
        payment={"css": "div.payment-method", "attribute": "data-code",
                 "expected": ["checkmo", "giftcard"]},
        shipping={"css": "input[name=shipping_method]", "attribute": "value"},
    ))
    # after the config (its validation parses each selector once); parse_html imports the
    # parser class on each call
    monkeypatch.setattr(selectolax.lexbor, "LexborHTMLParser", counting_parser)
    result = await run_check(clients, cfg)
    assert kinds(result) == [K.BUSINESS_LOGIC_DEGRADED]
    assert "payment method giftcard missing; offered: checkmo" in result.findings[0].summary
    assert [s.name for s in result.steps] == ["product", "add", "checkout"]
    assert len(parsed) == 3  # product page, cart page (after the redirect), checkout page
