"""Orders are never placed: order-placing requests are aborted in the browser and
order-placing clicks are refused, checked against a real page in the real Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.browser.guard import click_refusal, places_order
from agent.config.schema import Config
from agent.httpclient import HttpClients
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from classifier import FindingKind

pytestmark = pytest.mark.usefixtures("shared_browser")

PAGE = """<!DOCTYPE html><html><head><title>Checkout</title></head><body>
<h1>Checkout</h1>
<button id="pay" type="button">Place Order</button>
<button id="sneaky" type="button">Continue</button>
<form id="f" action="/checkout/submit" method="post"><button id="submit">Next</button></form>
<script>
document.getElementById('sneaky').addEventListener('click', function () {
  fetch('/api/orders', {method: 'POST', body: '{}'}).catch(function () {
    document.body.insertAdjacentHTML('beforeend', '<p id="blocked">blocked</p>');
  });
});
</script></body></html>"""


@pytest.fixture
async def shop() -> AsyncIterator[tuple[str, list[str]]]:
    received: list[str] = []

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def order(request: web.Request) -> web.Response:
        received.append(request.path)
        return web.json_response({"order": 1})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_post("/api/orders", order)
    app.router.add_post("/checkout/submit", order)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


def journey(url: str, click: str, **step: object) -> Config:
    return Config.model_validate({"sites": [{
        "name": "shop", "base_url": url, "checks": [{
            "name": "journey", "type": "browser", "learn_runs": 0,
            "steps": [{"name": "open", "goto": "/"},
                      {"name": "go", "click": click, "expect": {"no_js_errors": False},
                       **step}]}]}]})


async def run(config: Config) -> ProbeResult:
    site = config.sites[0]
    clients = HttpClients("storewatch-test")
    try:
        return await run_guarded(PROBES["browser"], site.checks[0],
                                 ProbeContext(clients, site, 20.0))
    finally:
        await clients.aclose()


@pytest.mark.parametrize("button", ["#pay", "#submit"])
async def test_order_placing_click_is_refused(shop: tuple[str, list[str]], button: str) -> None:
    url, received = shop
    result = await run(journey(url, button))
    (finding,) = result.findings
    assert finding.kind is FindingKind.CHECKOUT_BROKEN
    assert "refused to click" in finding.summary and "places an order" in finding.summary
    assert received == []


async def test_order_request_made_by_the_page_is_aborted(shop: tuple[str, list[str]]) -> None:
    url, received = shop
    result = await run(journey(url, "#sneaky", wait_for={"selector": "#blocked"}))
    assert result.findings == ()  # the page saw its request fail (#blocked appeared)
    assert result.measurements["blocked_order_requests"] == 1
    assert received == []


@pytest.mark.parametrize(("method", "url", "blocked"), [
    ("POST", "https://shop.example/rest/V1/guest-carts/abc/payment-information", True),
    ("POST", "https://shop.example/api/orders", True),
    ("POST", "https://shop.example/checkout/submit", True),
    ("POST", "https://api.example/v1/payment_intents", True),
    ("GET", "https://shop.example/api/orders", False),
    ("POST", "https://shop.example/api/cart/add", False),
    ("POST", "https://shop.example/checkout/estimate-shipping", False),
])
def test_places_order(method: str, url: str, blocked: bool) -> None:
    assert places_order(method, url) is blocked


def test_click_refusal_reads_label_and_form() -> None:
    assert click_refusal({"tag": "button", "type": "", "label": "Add to Cart"}) is None
    assert click_refusal({"tag": "button", "type": "", "label": "Place Order"}) is not None
    assert click_refusal({"tag": "button", "type": "submit", "label": "Next",
                          "form_action": "/checkout/onepage/saveOrder"}) is not None
    assert click_refusal({"tag": "a", "label": "Buy now", "href": "/x"}) is not None
