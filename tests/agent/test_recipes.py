"""Platform recipes: respx fakes (injected as the clients' transport) that follow each vendor's
documented guest flow (/work/shared/reference/storefront-apis.md), and every recipe's happy path
over real sockets against the demo store's platform-shaped endpoints."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from agent.demo import catalog as demo_catalog
from agent.demo.storefront import DemoStore
from agent.httpclient import HttpClients
from agent.transport import LeanTransport
from classifier import FindingKind
from tests.agent.commerce import kinds, one_check, run_check

K = FindingKind
SHOP = "https://shop.example"
WOO = f"{SHOP}/wp-json/wc/store/v1"


def recipe_check(**params: Any) -> dict[str, Any]:
    return {"name": "checkout", "type": "checkout", "recipe": params}


def magento_fake(mock: respx.MockRouter, broken: str | None) -> None:
    """Magento 2 guest-cart REST (§1.3): masked id string, cartItem line, rates, methods."""
    cart = "abcdefghijklmnopqrstuvwxyz012345"
    base = f"{SHOP}/rest/V1/guest-carts"

    def add_item(request: httpx.Request) -> httpx.Response:
        item = json.loads(request.content)["cartItem"]
        assert item["quote_id"] == cart
        if broken == "add":
            return httpx.Response(404, json={"message": "The product that was requested "
                                             "doesn't exist. Verify the product and try again.",
                                             "parameters": {}})
        return httpx.Response(200, json={"item_id": 7, "sku": item["sku"], "qty": 1,
                                         "name": "Joust Duffle Bag", "price": 34,
                                         "product_type": "simple", "quote_id": cart})

    mock.post(base).respond(500 if broken == "create" else 200,
                            json={"message": "Internal Error"} if broken == "create" else cart)
    mock.post(f"{base}/{cart}/items").mock(side_effect=add_item)
    mock.get(f"{base}/{cart}/items").respond(200, json=[] if broken == "items" else [
        {"item_id": 7, "sku": "24-MB01", "qty": 1, "quote_id": cart}])
    rates = [{"carrier_code": "flatrate", "method_code": "flatrate", "carrier_title": "Flat Rate",
              "method_title": "Fixed", "amount": 5, "available": True, "error_message": ""}]
    mock.post(f"{base}/{cart}/estimate-shipping-methods").respond(
        500 if broken == "shipping" else 200,
        json={"message": "Internal Error"} if broken == "shipping" else rates)
    methods = [{"code": "checkmo", "title": "Check / Money order"},
               {"code": "braintree", "title": "Credit Card"}]
    if broken == "payment-none":
        methods = []
    elif broken == "payment-one":
        methods = methods[:1]
    mock.get(f"{base}/{cart}/payment-methods").respond(200, json=methods)


def woo_fake(mock: respx.MockRouter, broken: str | None) -> None:
    """WooCommerce Store API (§2.2): Cart-Token/Nonce headers, add-item 201, update-customer."""
    token, nonce = "eyJ0eXAi.cart.token", "a1b2c3d4e5"
    headers = {"Cart-Token": token, "Nonce": nonce, "Nonce-Timestamp": "1700000000"}

    def cart(items: int, rates: list[dict[str, Any]]) -> dict[str, Any]:
        return {"items": [{"key": "k1", "id": 12, "quantity": 1}] * items, "items_count": items,
                "needs_payment": True, "needs_shipping": True,
                "payment_methods": [] if broken == "payment-none" else ["bacs", "cod"],
                "shipping_rates": [{"package_id": 0, "shipping_rates": rates}],
                "totals": {"total_price": "2500", "currency_minor_unit": 2}, "errors": []}

    def write(request: httpx.Request, body: dict[str, Any], status: int) -> httpx.Response:
        if request.headers.get("Cart-Token") != token:
            return httpx.Response(401, json={"code": "woocommerce_rest_missing_nonce",
                                             "message": "Missing the Nonce header.",
                                             "data": {"status": 401}})
        return httpx.Response(status, json=body, headers=headers)

    def add_item(request: httpx.Request) -> httpx.Response:
        if broken == "add":
            return httpx.Response(400, json={"code": "woocommerce_rest_cart_invalid_product",
                                             "message": "This product cannot be added.",
                                             "data": {"status": 400}})
        assert json.loads(request.content) == {"id": 12, "quantity": 1}
        return write(request, cart(1, []), 201)

    def update_customer(request: httpx.Request) -> httpx.Response:
        rates = [] if broken == "shipping" else [
            {"rate_id": "flat_rate:1", "name": "Flat rate", "price": "500", "selected": True}]
        return write(request, cart(1, rates), 200)

    mock.get(f"{WOO}/cart").respond(
        200, json=cart(0, []), headers={} if broken == "token" else headers)
    mock.post(f"{WOO}/cart/add-item").mock(side_effect=add_item)
    mock.post(f"{WOO}/cart/update-customer").mock(side_effect=update_customer)


def shopify_fake(mock: respx.MockRouter, broken: str | None) -> None:
    """Shopify Ajax cart (§3.1): add.js (422 when sold out), cart.js, /checkout → checkouts."""
    state = {"items": 0}

    def add(request: httpx.Request) -> httpx.Response:
        if broken == "add":
            return httpx.Response(422, json={"status": 422, "message": "Cart Error",
                                             "description": "Sold out"})
        state["items"] += json.loads(request.content)["items"][0]["quantity"]
        return httpx.Response(200, json={"items": [{"id": 4711, "quantity": 1}]},
                              headers={"Set-Cookie": "cart=c1-token; path=/"})

    def cart(request: httpx.Request) -> httpx.Response:
        count = state["items"] if request.headers.get("Cookie") == "cart=c1-token" else 0
        return httpx.Response(200, json={"token": "c1-token", "item_count": count, "items": [],
                                         "total_price": 2999, "currency": "EUR",
                                         "requires_shipping": True})

    mock.post(f"{SHOP}/cart/add.js").mock(side_effect=add)
    mock.get(f"{SHOP}/cart.js").mock(side_effect=cart)
    mock.get(f"{SHOP}/checkout").respond(
        500 if broken == "checkout" else 302, headers={"Location": "/checkouts/cn/c1-token"})
    mock.get(f"{SHOP}/checkouts/cn/c1-token").respond(
        200, html="<html><title>Checkout - Shop</title><div id='app'></div></html>")


CASES = [
    pytest.param("magento2", {"sku": "24-MB01", "expected_payment": ["checkmo"]}, magento_fake,
                 None, [], id="magento2-ok"),
    pytest.param("magento2", {"sku": "24-MB01"}, magento_fake, "create", [K.CHECKOUT_BROKEN],
                 id="magento2-create-cart"),
    pytest.param("magento2", {"sku": "24-MB01"}, magento_fake, "add", [K.CHECKOUT_BROKEN],
                 id="magento2-add"),
    pytest.param("magento2", {"sku": "24-MB01"}, magento_fake, "items", [K.CHECKOUT_BROKEN],
                 id="magento2-items"),
    pytest.param("magento2", {"sku": "24-MB01"}, magento_fake, "shipping",
                 [K.BUSINESS_LOGIC_DEGRADED], id="magento2-shipping"),
    pytest.param("magento2", {"sku": "24-MB01"}, magento_fake, "payment-none",
                 [K.PAYMENT_UNAVAILABLE], id="magento2-no-payment"),
    pytest.param("magento2", {"sku": "24-MB01", "expected_payment": ["checkmo", "braintree"]},
                 magento_fake, "payment-one", [K.BUSINESS_LOGIC_DEGRADED],
                 id="magento2-payment-method-missing"),
    pytest.param("woocommerce", {"product_id": 12, "expected_payment": ["bacs"]}, woo_fake, None,
                 [], id="woocommerce-ok"),
    pytest.param("woocommerce", {"product_id": 12}, woo_fake, "token", [K.CHECKOUT_BROKEN],
                 id="woocommerce-cart-token"),
    pytest.param("woocommerce", {"product_id": 12}, woo_fake, "add", [K.CHECKOUT_BROKEN],
                 id="woocommerce-add"),
    pytest.param("woocommerce", {"product_id": 12}, woo_fake, "shipping",
                 [K.BUSINESS_LOGIC_DEGRADED], id="woocommerce-shipping"),
    pytest.param("woocommerce", {"product_id": 12}, woo_fake, "payment-none",
                 [K.PAYMENT_UNAVAILABLE], id="woocommerce-no-payment"),
    pytest.param("shopify", {"variant_id": 4711}, shopify_fake, None, [], id="shopify-ok"),
    pytest.param("shopify", {"variant_id": 4711}, shopify_fake, "add", [K.CHECKOUT_BROKEN],
                 id="shopify-add"),
    pytest.param("shopify", {"variant_id": 4711}, shopify_fake, "checkout", [K.CHECKOUT_BROKEN],
                 id="shopify-checkout"),
]


@pytest.mark.parametrize(("platform", "params", "fake", "broken", "expected"), CASES)
async def test_recipe_against_vendor_fake(platform: str,
                                          params: dict[str, Any], fake: Any, broken: str | None,
                                          expected: list[FindingKind]) -> None:
    mock = respx.MockRouter(assert_all_called=False)
    fake(mock, broken)
    vendor = HttpClients("storewatch-test", env={},
                         transport=lambda ctx, rules: httpx.MockTransport(mock.async_handler))
    try:
        result = await run_check(vendor, one_check(SHOP, recipe_check(**params), platform))
    finally:
        await vendor.aclose()
    assert kinds(result) == expected, result.findings
    assert result.steps, "every recipe reports per-step timings"


async def test_magento2_recipe_against_the_demo_store(store: DemoStore,
                                                      clients: HttpClients) -> None:
    cfg = one_check(store.url, recipe_check(sku="DS-TEST-SKU", expected_payment=["checkmo"]),
                    "magento2")
    result = await run_check(clients, cfg)
    assert result.success, result.findings
    assert [s.name for s in result.steps] == ["create-cart", "add-to-cart", "cart-items",
                                              "estimate-shipping", "payment-methods"]
    store.set_faults(["payment"])
    assert kinds(await run_check(clients, cfg)) == [K.PAYMENT_UNAVAILABLE]


@pytest.mark.parametrize(("fault", "expected"), [
    pytest.param(None, [], id="healthy"),
    pytest.param("checkout", [K.CHECKOUT_BROKEN], id="checkout"),
    pytest.param("payment", [K.PAYMENT_UNAVAILABLE], id="payment"),
    pytest.param("corrupt", [K.PAGE_CORRUPTED], id="corrupt"),
])
async def test_generic_recipe_against_the_demo_store(store: DemoStore, clients: HttpClients,
                                                     fault: str | None,
                                                     expected: list[FindingKind]) -> None:
    store.set_faults([fault] if fault else [])
    cfg = one_check(store.url, recipe_check(product_path="/product/demo-test-product",
                                            expected_payment=["checkmo"]))
    result = await run_check(clients, cfg)
    assert kinds(result) == expected, result.findings
    if fault is None:
        assert [s.name for s in result.steps] == ["product-page", "add-to-cart", "cart",
                                                  "checkout"]


TEST_PRODUCT_ID = demo_catalog.product_by_sku(demo_catalog.TEST_SKU).id  # type: ignore[union-attr]


@pytest.mark.parametrize(("platform", "params", "steps"), [
    pytest.param("magento2", {"sku": demo_catalog.TEST_SKU, "expected_payment": ["checkmo"]},
                 ["create-cart", "add-to-cart", "cart-items", "estimate-shipping",
                  "payment-methods"], id="magento2"),
    pytest.param("woocommerce", {"product_id": TEST_PRODUCT_ID, "expected_payment": ["checkmo"]},
                 ["cart", "add-to-cart", "estimate-shipping"], id="woocommerce"),
    pytest.param("shopify", {"variant_id": TEST_PRODUCT_ID},
                 ["add-to-cart", "cart", "checkout"], id="shopify"),
    pytest.param("generic", {"product_path": "/product/demo-test-product",
                             "expected_payment": ["checkmo"]},
                 ["product-page", "add-to-cart", "cart", "checkout"], id="generic"),
])
async def test_recipe_happy_path_over_real_sockets(store: DemoStore, clients: HttpClients,
                                                   platform: str, params: dict[str, Any],
                                                   steps: list[str]) -> None:
    """Every platform's recipe through the production transport against the demo store's
    platform-shaped endpoints; a broken checkout is still seen there."""
    assert isinstance(clients.get()._transport, LeanTransport)
    cfg = one_check(store.url, recipe_check(**params), platform)
    result = await run_check(clients, cfg)
    assert result.success, result.findings
    assert [s.name for s in result.steps] == steps
    store.set_faults(["checkout"])
    assert kinds(await run_check(clients, cfg)) == [K.CHECKOUT_BROKEN]
