"""The bundled demo storefront: a small, realistic shop on loopback with switchable faults.

One aiohttp.web app per :class:`DemoStore`; all state (faults, shopper sessions, carts) lives on
the store, so several stores can run in one process. It serves a Magento-flavoured HTML shop
(home, categories, products, cookie cart, checkout page that never takes orders, search,
reviews, wishlist, sitemap) and a Magento 2 style guest-cart REST API under ``/rest/V1``.

Faults are read per request from the live sets, so ``set_faults()`` or ``POST /_demo/faults``
take effect at once; ``/_demo/*`` is never affected by a fault. See ``FAULTS`` for the names and
the handler code below for exactly what each one does. A request sees the global set
(``DemoStore.faults``) plus the set of the agent named in its ``X-Storewatch-Agent`` header
(``DemoStore.agent_faults``, ``POST /_demo/faults {"faults": [...], "agents": [...]}``), so one
store can be down for one monitoring agent and up for the others.

``down`` keeps a request unanswered while the fault stays on; once it is cleared the held
connection is closed without an answer, as a crashed server's would be (so a recovering store
does not answer minutes-old requests slowly). ``close()`` cancels held requests instead of
waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import html
import json
import re
import secrets
import signal
import string
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.demo import catalog
from agent.demo.catalog import TEST_SKU, Product

__all__ = [
    "FAULTS",
    "SLOW_DELAY_S",
    "DemoStore",
    "UnknownFaultError",
    "run_demo_store",
    "start_store",
    "validate_faults",
]

AGENT_HEADER = "X-Storewatch-Agent"
"""The request header that names the monitoring agent (agent/identity.py sends it)."""
MAX_AGENT_NAME = 64
"""Longest agent name ``POST /_demo/faults`` accepts (as ``agent.name`` in the config)."""
_REQUEST_AGENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "demo_request_agent", default=None)
"""The agent named by the request being handled (set by the fault middleware)."""
FAULTS_USAGE = (
    'POST /_demo/faults {"faults": [names...]} replaces the global set (every request); '
    'with "agents": [names...] it replaces the set of each named agent instead (requests whose '
    f"{AGENT_HEADER} header names it; [] clears them). A request gets the global set plus its "
    "agent's set.")

FAULTS: frozenset[str] = frozenset({
    "down", "slow", "server_error", "checkout", "payment",
    "catalog", "search", "corrupt", "skimmer", "reviews", "fragile",
    "js_bundle", "js_error", "skimmer_dynamic", "slow_render",
})
JS_FAULTS: frozenset[str] = frozenset({"js_bundle", "js_error", "skimmer_dynamic", "slow_render"})
"""Faults only a browser sees, in JavaScript mode (``--js``): the HTML stays 200 in each.
``js_bundle`` serves a truncated shop bundle (a syntax error, nothing renders); ``js_error``
makes add-to-cart throw before its request; ``skimmer_dynamic`` makes the tag manager inject a
script from another origin (``localhost`` vs ``127.0.0.1``) on cart and checkout;
``slow_render`` delays the home page's client-side catalog (its largest paint) by
``SLOW_RENDER_MS``."""
SLOW_RENDER_MS = 6000
SLOW_DELAY_S: float = 2.5
"""How long the ``slow`` fault delays each storefront response by default, in seconds
(``DemoStore.slow_delay_s``, ``POST /_demo/faults {"slow_delay_s": N}``, ``--slow-delay``)."""
MAX_SLOW_DELAY_S: float = 300.0
FRAGILE_LIMIT: int = 2
"""``fragile``: storefront requests the shop handles at once; one more gets a 500 "database is
locked" (a small shop on SQLite or a tiny database pool)."""
FRAGILE_WORK_S: float = 0.2
"""``fragile``: how long each request holds its database connection."""

SESSION_COOKIE = "demo_session"
STORE_NAME = "Demo Outfitters"

_MAX_SESSIONS = 5000          # oldest shopper sessions are forgotten beyond this (probes make many)
_MAX_GUEST_CARTS = 5000       # same for REST guest carts
_MAX_QTY = 10_000
_DOWN_POLL_S = 0.05
_SHUTDOWN_TIMEOUT_S = 1.0     # grace for in-flight requests that are not stalled by a fault
_NO_SESSION_PREFIXES = ("/rest/", "/_demo/", "/static/", "/wp-json/")
_STATIC_DIR = Path(__file__).with_name("static")
_STATIC_TYPES = {"styles.css": "text/css", "app.js": "text/javascript",
                 "shop.js": "text/javascript", "tags.js": "text/javascript",
                 "collect.js": "text/javascript"}

_WOO = "/wp-json/wc/store/v1"
_PAYMENT_METHODS: tuple[tuple[str, str], ...] = (
    ("checkmo", "Check / Money order"),
    ("banktransfer", "Bank Transfer Payment"),
    ("cashondelivery", "Cash On Delivery"),
)
_FLATRATE_PER_ITEM = Decimal("5.00")
_TABLERATE_AMOUNT = Decimal("15.00")

_MAGENTO_ERROR_HTML = (
    '<div class="error-page" id="error-report">'
    "<h1>There has been an error processing your request</h1>"
    "<p>Exception printing is disabled by default for security reasons.</p>"
    "<p>Error log record number: 6f1e0c2b9a7d</p></div>"
)
_SKIMMER_HTML = (
    '<script src="https://cdn.jsdelivr-analytics.example/skim.js"></script>\n'
    "<script>var s=document.createElement('script');s.src='https://pay-verify.example/c.js';"
    "document.head.appendChild(s);</script>"
)
_REVIEW_POOL: tuple[tuple[str, int], ...] = (
    ("Great fit, true to size", 5),
    ("Does the job", 4),
    ("Good value for the price", 4),
    ("Runs a little small", 3),
    ("Comfortable on long days", 5),
)
_SEARCH_FIELD_KEY = re.compile(
    r"searchCriteria\[filterGroups\]\[(\d+)\]\[filters\]\[(\d+)\]\[field\]"
)
_REQUIRED_FIELD = '"%fieldName" is required. Enter and try again.'
_NO_PRODUCT = "The product that was requested doesn't exist. Verify the product and try again."


class UnknownFaultError(ValueError):
    """A fault name that the demo store does not know; the message lists the valid ones."""

    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown: tuple[str, ...] = tuple(sorted(unknown))
        super().__init__(
            f"unknown demo store fault(s): {', '.join(self.unknown)} "
            f"(valid faults: {', '.join(sorted(FAULTS))})"
        )


def validate_faults(names: Iterable[str]) -> frozenset[str]:
    """Return the fault names as a frozenset; raise UnknownFaultError for any unknown name.

    A bare string counts as one name (not as an iterable of characters).
    """
    items = [names] if isinstance(names, str) else list(names)
    unknown = {name for name in items if name not in FAULTS}
    if unknown:
        raise UnknownFaultError(unknown)
    return frozenset(items)


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class _Session:
    token: str
    form_key: str
    cart: dict[str, int] = field(default_factory=dict)   # sku -> qty, in insertion order
    wishlist: list[str] = field(default_factory=list)


@dataclass
class _CartLine:
    item_id: int
    product: Product
    qty: int


@dataclass
class _GuestCart:
    masked_id: str
    lines: list[_CartLine] = field(default_factory=list)

    def items_qty(self) -> int:
        return sum(line.qty for line in self.lines)

    def subtotal(self) -> Decimal:
        return sum((line.product.price * line.qty for line in self.lines), Decimal(0))


_SESSION_KEY = web.RequestKey("demo_session", _Session)


def _random_key(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


# ---------------------------------------------------------------------------------------------
# Small pure helpers (HTML, JSON shapes)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def _amount(amount: Decimal) -> float:
    return float(amount)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _json_ld(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/ld+json">{text}</script>'


def _product_ld(product: Product, origin: str) -> dict[str, Any]:
    return {
        "@type": "Product",
        "name": product.name,
        "sku": product.sku,
        "url": f"{origin}/product/{product.url_key}",
        "offers": {
            "@type": "Offer",
            "price": f"{product.price:.2f}",
            "priceCurrency": "USD",
            "availability": "https://schema.org/InStock",
        },
    }


def _item_list_ld(name: str, products: Sequence[Product], origin: str) -> dict[str, Any]:
    return {
        "@context": "https://schema.org",
        "@type": "ItemList",
        "name": name,
        "numberOfItems": len(products),
        "itemListElement": [
            {"@type": "ListItem", "position": i, "item": _product_ld(p, origin)}
            for i, p in enumerate(products, start=1)
        ],
    }


def _product_card(product: Product) -> str:
    return (
        f'<li class="product-card" data-sku="{_e(product.sku)}">'
        f'<a class="product-link" href="/product/{_e(product.url_key)}">{_e(product.name)}</a>'
        f'<span class="price" data-price-amount="{product.price:.2f}">{_money(product.price)}'
        "</span></li>"
    )


def _product_list(products: Sequence[Product]) -> str:
    cards = "\n".join(_product_card(p) for p in products)
    return f'<ol class="product-list">\n{cards}\n</ol>'


def _shipping_rates(items_qty: int) -> list[dict[str, Any]]:
    """Magento-shaped shipping rates for a cart of items_qty units ([] for an empty cart)."""
    if items_qty <= 0:
        return []
    flat = _FLATRATE_PER_ITEM * items_qty
    rates = (
        ("flatrate", "flatrate", "Flat Rate", "Fixed", flat),
        ("tablerate", "bestway", "Best Way", "Table Rate", _TABLERATE_AMOUNT),
    )
    return [
        {
            "carrier_code": carrier, "method_code": method,
            "carrier_title": carrier_title, "method_title": method_title,
            "amount": _amount(amount), "base_amount": _amount(amount),
            "available": True, "error_message": "",
            "price_excl_tax": _amount(amount), "price_incl_tax": _amount(amount),
        }
        for carrier, method, carrier_title, method_title, amount in rates
    ]


def _rest_error(status: int, message: str,
                parameters: dict[str, Any] | list[Any] | None = None) -> web.Response:
    return web.json_response(
        {"message": message, "parameters": {} if parameters is None else parameters},
        status=status,
    )


def _rest_internal_error() -> web.Response:
    report = f"webapi-{secrets.token_hex(6)}"
    return _rest_error(
        500, f"Internal Error. Details are available in Magento log file. Report ID: {report}"
    )


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _parse_qty(raw: object) -> int | None:
    """A positive whole quantity from a form or JSON value, or None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None
    if isinstance(raw, int | float) and raw == int(raw) and 0 < raw <= _MAX_QTY:
        return int(raw)
    return None


# ---------------------------------------------------------------------------------------------
# The shop: state plus request handlers


class _Shop:
    """State and handlers of one demo store (no module-level state)."""

    def __init__(self, faults: set[str], js: bool = False) -> None:
        self.faults = faults
        """The global set: every request gets these."""
        self.agent_faults: dict[str, frozenset[str]] = {}
        """Agent name → the faults only requests from that agent get (on top of the global)."""
        self.js = js
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        self.guest_carts: OrderedDict[str, _GuestCart] = OrderedDict()
        self.next_item_id = 1
        self.stalled: set[asyncio.Task[Any]] = set()   # requests held by "down" or "slow"
        self.slow_delay_s = SLOW_DELAY_S
        self.active = 0                  # storefront requests in progress (for "fragile")
        self.fragile_rejections = 0      # requests "fragile" answered 500
        self.closing = False
        self.static = {name: (_STATIC_DIR / name).read_bytes() for name in _STATIC_TYPES}

    # -- app assembly ----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._fault_middleware, self._session_middleware,
                         self._not_found_middleware],
        )
        r = app.router
        if self.js:
            r.add_get("/", self.js_home)
            r.add_get("/cart", self.js_cart)
            r.add_get("/checkout", self.js_checkout)
            r.add_get("/api/products", self.api_products)
            r.add_get("/api/cart", self.api_cart)
            r.add_post("/api/cart/add", self.api_cart_add)
            r.add_get("/api/checkout", self.api_checkout)
            r.add_post("/api/order", self.api_order)
        else:
            r.add_get("/", self.home)
            r.add_get("/cart", self.cart)
            r.add_get("/checkout", self.checkout)
        r.add_get("/category/{slug}", self.category)
        r.add_get("/product/{url_key}", self.product)
        r.add_post("/cart/add", self.cart_add)
        r.add_post("/checkout/estimate-shipping", self.checkout_estimate_shipping)
        r.add_get("/search", self.search)
        r.add_get("/static/{name}", self.static_file)
        r.add_get("/review/product/{sku}", self.reviews_get)
        r.add_post("/review/product/{sku}", self.reviews_post)
        r.add_get("/wishlist", self.wishlist_get)
        r.add_post("/wishlist/add", self.wishlist_add)
        r.add_get("/sitemap.xml", self.sitemap)
        r.add_get("/robots.txt", self.robots)
        cart = "/rest/V1/guest-carts/{cart_id}"
        r.add_post("/rest/V1/guest-carts", self.rest_cart_create)
        r.add_post(f"{cart}/items", self.rest_cart_add_item)
        r.add_get(f"{cart}/items", self.rest_cart_items)
        r.add_delete(cart + "/items/{item_id}", self.rest_cart_delete_item)
        r.add_post(f"{cart}/estimate-shipping-methods", self.rest_estimate_shipping)
        r.add_get(f"{cart}/payment-methods", self.rest_payment_methods)
        r.add_get(f"{cart}/totals", self.rest_totals)
        r.add_get("/rest/V1/directory/currency", self.rest_currency)
        r.add_get("/rest/V1/search", self.rest_search)
        r.add_route("*", "/rest/{tail:.*}", self.rest_no_route)
        r.add_get(f"{_WOO}/cart", self.woo_cart)
        r.add_post(f"{_WOO}/cart/add-item", self.woo_add_item)
        r.add_post(f"{_WOO}/cart/update-customer", self.woo_update_customer)
        r.add_post("/cart/add.js", self.shopify_add)
        r.add_get("/cart.js", self.shopify_cart)
        r.add_get("/_demo/faults", self.demo_faults_get)
        r.add_post("/_demo/faults", self.demo_faults_post)
        return app

    # -- middlewares -----------------------------------------------------------------------

    @property
    def in_effect(self) -> frozenset[str] | set[str]:
        """The faults the request being handled gets: the global set plus its agent's set."""
        agent = _REQUEST_AGENT.get()
        own = self.agent_faults.get(agent) if agent is not None else None
        return self.faults if not own else self.faults | own

    @web.middleware
    async def _fault_middleware(self, request: web.Request,
                                handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_demo/"):
            return await handler(request)
        token = _REQUEST_AGENT.set(request.headers.get(AGENT_HEADER))
        try:
            return await self._fault_gate(request, handler)
        finally:
            _REQUEST_AGENT.reset(token)

    async def _fault_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/"):  # served by the web server, no database
            return await self._faults(request, handler)
        if "fragile" in self.in_effect and self.active >= FRAGILE_LIMIT:
            self.fragile_rejections += 1
            return web.Response(
                status=500, content_type="text/html",
                text="<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
                     "<body><h1>Internal Server Error</h1><p>SQLSTATE[HY000]: General error: 5 "
                     "database is locked</p></body></html>")
        self.active += 1
        try:
            if "fragile" in self.in_effect:
                await asyncio.sleep(FRAGILE_WORK_S)
            return await self._faults(request, handler)
        finally:
            self.active -= 1

    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "down" in self.in_effect:
            await self._stall(self._hang_while_down(request))
        if "slow" in self.in_effect:
            await self._stall(asyncio.sleep(self.slow_delay_s))
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError  # the client gave up waiting: nobody to answer
        if "server_error" in self.in_effect:
            return web.Response(
                status=503, content_type="text/html", headers={"Retry-After": "30"},
                text="<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
                     "<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
                     "service your request. Please try again later.</p></body></html>",
            )
        return await handler(request)

    @web.middleware
    async def _session_middleware(self, request: web.Request,
                                  handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_NO_SESSION_PREFIXES):
            return await handler(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        session = self.sessions.get(token)
        created = session is None
        if session is None:
            session = self._new_session()
        else:
            self.sessions.move_to_end(token)
        request[_SESSION_KEY] = session
        response = await handler(request)
        if created:
            response.set_cookie(SESSION_COOKIE, session.token, path="/", httponly=True,
                                samesite="Lax")
        return response

    @web.middleware
    async def _not_found_middleware(self, request: web.Request,
                                    handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            if request.path.startswith("/static/"):
                return web.Response(status=404, text="404: Not Found")
            return self._not_found_page()

    async def _stall(self, waiter: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.stalled.add(task)
        try:
            await waiter
        finally:
            if task is not None:
                self.stalled.discard(task)

    async def _hang_while_down(self, request: web.Request) -> None:
        while "down" in self.in_effect:
            transport = request.transport
            if self.closing or transport is None or transport.is_closing():
                # The client gave up (or the store is closing): drop the request unanswered.
                raise asyncio.CancelledError
            await asyncio.sleep(_DOWN_POLL_S)
        if request.transport is not None:
            request.transport.close()  # back up: the held request dies with the old "process"
        raise asyncio.CancelledError

    # -- state helpers ---------------------------------------------------------------------

    def _new_session(self) -> _Session:
        session = _Session(token=secrets.token_hex(16), form_key=_random_key(16))
        self.sessions[session.token] = session
        while len(self.sessions) > _MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return session

    @staticmethod
    def _session(request: web.Request) -> _Session:
        return request[_SESSION_KEY]

    def _visible(self, product: Product) -> bool:
        """False for the products the ``catalog`` fault removes (positions 1, 3 mod 5)."""
        if "catalog" not in self.in_effect or product.sku == TEST_SKU:
            return True
        return product.position % 5 not in (1, 3)

    def _visible_in(self, slug: str) -> list[Product]:
        return [p for p in catalog.products_in(slug) if self._visible(p)]

    def _find_sku(self, sku: str) -> Product | None:
        product = catalog.product_by_sku(sku)
        return product if product is not None and self._visible(product) else None

    def _search(self, term: str) -> list[Product]:
        needle = term.strip().lower()
        if "search" in self.in_effect or not needle:
            return []
        return [p for p in catalog.PRODUCTS
                if self._visible(p) and (needle in p.name.lower() or needle in p.sku.lower())]

    def _guest_cart(self, cart_id: str) -> _GuestCart | None:
        return self.guest_carts.get(cart_id)

    # -- HTML pages ------------------------------------------------------------------------

    def _page(self, title: str, body: str, *, status: int = 200, head: str = "",
              body_class: str = "", checkout_area: bool = False) -> web.Response:
        corrupt = "corrupt" in self.in_effect
        stylesheet = "/static/styles-v2.css" if corrupt else "/static/styles.css"
        nav = "".join(f'<li><a href="/category/{_e(c.slug)}">{_e(c.name)}</a></li>'
                      for c in catalog.CATEGORIES)
        error_block = _MAGENTO_ERROR_HTML if corrupt else ""
        main = "" if corrupt else body
        extra_scripts = _SKIMMER_HTML if checkout_area and "skimmer" in self.in_effect else ""
        document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} | {STORE_NAME}</title>
<link rel="stylesheet" href="{stylesheet}">
{head}
</head>
<body class="{_e(body_class)}">
<header class="page-header">
<a class="logo" href="/">{STORE_NAME}</a>
<nav class="navigation"><ul>{nav}</ul></nav>
<form class="block-search" id="search_mini_form" action="/search" method="get">
<label for="search">Search</label>
<input id="search" type="search" name="q" placeholder="Search entire store here...">
<button type="submit" class="action search">Search</button>
</form>
<a class="minicart" href="/cart">My Cart</a>
</header>
{error_block}
<main id="maincontent" class="page-main">{main}</main>
<footer class="page-footer"><p>&copy; {STORE_NAME}. A demo store bundled with storewatch:
no real products, no real orders.</p></footer>
<script src="/static/app.js"></script>
{extra_scripts}
</body>
</html>
"""
        return web.Response(status=status, text=document, content_type="text/html")

    def _message_page(self, status: int, title: str, message: str) -> web.Response:
        body = (f'<h1 class="page-title">{_e(title)}</h1>'
                f'<div class="message error"><p>{_e(message)}</p></div>'
                '<p><a href="/">Continue shopping</a></p>')
        return self._page(title, body, status=status, body_class="error-page")

    def _not_found_page(self) -> web.Response:
        return self._message_page(404, "Whoops, our bad...",
                                  "The page you requested was not found.")

    async def home(self, request: web.Request) -> web.Response:
        """GET /: categories, featured products, search form."""
        featured: list[Product] = []
        for c in catalog.CATEGORIES:
            featured.extend([p for p in self._visible_in(c.slug) if p.sku != TEST_SKU][:2])
        links = "".join(f'<li><a class="category-link" href="/category/{_e(c.slug)}">'
                        f"Shop {_e(c.name)}</a></li>" for c in catalog.CATEGORIES)
        body = f"""<section class="hero">
<h1 class="page-title">Welcome to {STORE_NAME}</h1>
<p>Trail, studio and everyday wear, tested by people who sweat.</p>
</section>
<nav class="category-links"><ul>{links}</ul></nav>
<section class="featured"><h2>Featured products</h2>
{_product_list(featured)}
</section>"""
        return self._page("Home", body, body_class="cms-index-index")

    async def category(self, request: web.Request) -> web.Response:
        """GET /category/{slug}: a product listing with ItemList JSON-LD."""
        cat = catalog.category_by_slug(request.match_info["slug"])
        if cat is None:
            return self._not_found_page()
        products = self._visible_in(cat.slug)
        origin = str(request.url.origin())
        body = f"""<h1 class="page-title">{_e(cat.name)}</h1>
<p class="toolbar-amount">{_plural(len(products), "item")}</p>
{_product_list(products)}
{_json_ld(_item_list_ld(cat.name, products, origin))}"""
        return self._page(cat.name, body, body_class="catalog-category-view")

    async def product(self, request: web.Request) -> web.Response:
        """GET /product/{url_key}: product page with the add-to-cart form."""
        product = catalog.product_by_url_key(request.match_info["url_key"])
        if product is None or not self._visible(product):
            return self._not_found_page()
        session = self._session(request)
        origin = str(request.url.origin())
        review_count = len(self._seed_reviews(product))
        ld = {"@context": "https://schema.org", **_product_ld(product, origin)}
        head = ('<meta property="og:type" content="product">\n'
                f'<meta property="og:title" content="{_e(product.name)}">\n'
                f'<meta property="product:price:amount" content="{product.price:.2f}">\n'
                '<meta property="product:price:currency" content="USD">')
        body = f"""<div class="product-info-main">
<h1 class="page-title"><span class="base">{_e(product.name)}</span></h1>
<div class="product-info-price"><span class="price" data-price-amount="{product.price:.2f}">\
{_money(product.price)}</span></div>
<div class="product-info-stock-sku"><div class="stock available">In stock</div>
<div class="product attribute sku">SKU: <span class="sku">{_e(product.sku)}</span></div></div>
<form id="product_addtocart_form" method="post" action="/cart/add">
<input type="hidden" name="form_key" value="{_e(session.form_key)}">
<input type="hidden" name="sku" value="{_e(product.sku)}">
<input type="hidden" name="qty" value="1">
<button type="submit" class="action tocart primary">Add to Cart</button>
</form>
</div>
<section id="reviews" class="product-reviews">
<h2>Customer Reviews</h2>
<p class="reviews-count">{_plural(review_count, "review")}</p>
<a class="reviews-link" href="/review/product/{_e(product.sku)}">Read the reviews</a>
</section>
{_json_ld(ld)}"""
        return self._page(product.name, body, head=head, body_class="catalog-product-view")

    async def cart_add(self, request: web.Request) -> web.Response:
        """POST /cart/add: form_key-checked add to the session cart, then 302 to /cart."""
        if "checkout" in self.in_effect:
            return self._message_page(500, "Shopping Cart",
                                      "We can't add this item to your shopping cart right now.")
        session = self._session(request)
        form = await request.post()
        form_key = form.get("form_key")
        if not isinstance(form_key, str) or not secrets.compare_digest(
                form_key.encode(), session.form_key.encode()):
            return self._message_page(403, "Invalid Form Key",
                                      "Invalid Form Key. Please refresh the page.")
        sku = form.get("sku")
        product = self._find_sku(sku) if isinstance(sku, str) else None
        if product is None:
            return self._message_page(404, "Shopping Cart",
                                      "The product that was requested doesn't exist.")
        qty = _parse_qty(form.get("qty", "1"))
        if qty is None:
            return self._message_page(400, "Shopping Cart",
                                      "Please enter a number greater than 0 in this field.")
        session.cart[product.sku] = min(session.cart.get(product.sku, 0) + qty, _MAX_QTY)
        return _redirect("/cart")

    def _session_lines(self, session: _Session) -> list[tuple[Product, int]]:
        lines = []
        for sku, qty in session.cart.items():
            product = catalog.product_by_sku(sku)
            if product is not None:
                lines.append((product, qty))
        return lines

    async def cart(self, request: web.Request) -> web.Response:
        """GET /cart: the session cart."""
        lines = self._session_lines(self._session(request))
        if not lines:
            body = ('<h1 class="page-title">Shopping Cart</h1>'
                    '<div class="cart-empty"><p>You have no items in your shopping cart.</p>'
                    '<p><a href="/">Continue shopping</a></p></div>')
            return self._page("Shopping Cart", body, body_class="checkout-cart-index",
                              checkout_area=True)
        rows = "\n".join(
            f'<tr class="cart-item" data-sku="{_e(p.sku)}"><td class="item-name">{_e(p.name)}</td>'
            f'<td class="item-price">{_money(p.price)}</td><td class="item-qty">{qty}</td>'
            f'<td class="item-subtotal">{_money(p.price * qty)}</td></tr>'
            for p, qty in lines
        )
        subtotal = sum((p.price * qty for p, qty in lines), Decimal(0))
        body = f"""<h1 class="page-title">Shopping Cart</h1>
<table class="cart-table" id="shopping-cart-table">
<thead><tr><th>Item</th><th>Price</th><th>Qty</th><th>Subtotal</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<div class="cart-summary"><p>Subtotal: <span class="subtotal" data-amount="{subtotal:.2f}">\
{_money(subtotal)}</span></p>
<a class="action checkout" href="/checkout">Proceed to Checkout</a></div>"""
        return self._page("Shopping Cart", body, body_class="checkout-cart-index",
                          checkout_area=True)

    async def checkout(self, request: web.Request) -> web.Response:
        """GET /checkout: shipping and payment methods; orders are never accepted."""
        lines = self._session_lines(self._session(request))
        if not lines:
            return _redirect("/cart")
        items_qty = sum(qty for _, qty in lines)
        subtotal = sum((p.price * qty for p, qty in lines), Decimal(0))
        shipping = "\n".join(
            f'<label><input type="radio" name="shipping_method" '
            f'value="{_e(r["carrier_code"])}_{_e(r["method_code"])}"{" checked" if i == 0 else ""}>'
            f' {_e(r["carrier_title"])} ({_e(r["method_title"])}): '
            f'{_money(Decimal(str(r["amount"])))}</label>'
            for i, r in enumerate(_shipping_rates(items_qty))
        )
        if "payment" in self.in_effect:
            payment = '<div class="message notice">No Payment method available.</div>'
        else:
            payment = "\n".join(
                f'<div class="payment-method" data-code="{_e(code)}">{_e(title)}</div>'
                for code, title in _PAYMENT_METHODS
            )
        body = f"""<h1 class="page-title">Checkout</h1>
<section class="checkout-summary"><h2>Order Summary</h2>
<p>{_plural(items_qty, "item")} in cart, subtotal <span class="subtotal" \
data-amount="{subtotal:.2f}">{_money(subtotal)}</span></p></section>
<form id="co-shipping-method-form"><fieldset><legend>Shipping Methods</legend>
{shipping}
</fieldset></form>
<form id="shipping-estimate-form"><fieldset><legend>Estimate Shipping</legend>
<input type="text" name="country_id" value="US"> <input type="text" name="postcode" value="90001">
<button type="submit">Estimate</button></fieldset></form>
<p id="shipping-estimate-result"></p>
<section id="checkout-payment-method-load"><h2>Payment Method</h2>
{payment}
</section>
<p class="message notice demo-notice">This is a demo store: orders are not accepted here, \
so there is no Place Order button.</p>"""
        return self._page("Checkout", body, body_class="checkout-index-index",
                          checkout_area=True)

    async def checkout_estimate_shipping(self, request: web.Request) -> web.Response:
        """POST /checkout/estimate-shipping: rates for the session cart ([] when empty)."""
        data = await _json_object(request)
        if data is None:
            return _rest_error(400, "Decoding error.")
        country = data.get("country_id")
        if not isinstance(country, str) or not country.strip():
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "country_id"})
        items_qty = sum(qty for _, qty in self._session_lines(self._session(request)))
        return web.json_response(_shipping_rates(items_qty))

    async def search(self, request: web.Request) -> web.Response:
        """GET /search?q=term: case-insensitive substring search over names and SKUs."""
        term = request.query.get("q", "")
        results = self._search(term)
        origin = str(request.url.origin())
        empty = ('<div class="message notice">Your search returned no results.</div>'
                 if not results else "")
        body = f"""<h1 class="page-title">Search results for: '{_e(term)}'</h1>
<p class="search-results-count">{_plural(len(results), "result")} for '{_e(term)}'</p>
{empty}
{_product_list(results)}
{_json_ld(_item_list_ld(f"Search results for {term}", results, origin))}"""
        return self._page(f"Search results for: '{term}'", body,
                          body_class="catalogsearch-result-index")

    async def static_file(self, request: web.Request) -> web.Response:
        """GET /static/{name}: the two bundled assets."""
        name = request.match_info["name"]
        if name not in self.static:
            raise web.HTTPNotFound()
        body = self._with_js_faults(name, self.static[name])
        return web.Response(body=body, content_type=_STATIC_TYPES[name],
                            charset="utf-8", headers={"Cache-Control": "public, max-age=300"})

    # -- JavaScript mode (--js): shells rendered by /static/shop.js from /api/* ------------

    def _with_js_faults(self, name: str, body: bytes) -> bytes:
        """The asset as the browser-only faults change it (the status stays 200)."""
        if name == "shop.js":
            if "js_bundle" in self.in_effect:
                return body[: len(body) * 2 // 3]  # a deploy cut the bundle short
            if "js_error" in self.in_effect:
                body = body.replace(b"var FAULT_ADD_ERROR = false;",
                                    b"var FAULT_ADD_ERROR = true;")
            if "slow_render" in self.in_effect:
                body = body.replace(b"var RENDER_DELAY_MS = 0;",
                                    f"var RENDER_DELAY_MS = {SLOW_RENDER_MS};".encode())
        elif name == "tags.js" and "skimmer_dynamic" in self.in_effect:
            body = body.replace(b"var INJECT = false;", b"var INJECT = true;")
        return body

    def _js_shell(self, title: str, view: str, body_class: str) -> web.Response:
        head = ('<script src="/static/shop.js" defer></script>\n'
                '<script src="/static/tags.js" defer></script>')
        body = ('<p class="minicart-summary">Items in cart: '
                '<span class="minicart"><span class="counter">0</span></span></p>'
                f'<div id="app" data-view="{view}" style="min-height:100vh">'
                '<p class="loading">Loading…</p></div>')
        return self._page(title, body, head=head, body_class=body_class,
                          checkout_area=view != "home")

    async def js_home(self, request: web.Request) -> web.Response:
        """GET / (JS mode): a shell; the products are rendered client-side."""
        return self._js_shell("Home", "home", "cms-index-index")

    async def js_cart(self, request: web.Request) -> web.Response:
        """GET /cart (JS mode): a shell rendered from /api/cart."""
        return self._js_shell("Shopping Cart", "cart", "checkout-cart-index")

    async def js_checkout(self, request: web.Request) -> web.Response:
        """GET /checkout (JS mode): a shell rendered from /api/checkout."""
        return self._js_shell("Checkout", "checkout", "checkout-index-index")

    async def api_products(self, request: web.Request) -> web.Response:
        """GET /api/products: the featured products (two per category)."""
        featured: list[Product] = []
        for c in catalog.CATEGORIES:
            featured.extend([p for p in self._visible_in(c.slug) if p.sku != TEST_SKU][:2])
        test = catalog.product_by_sku(TEST_SKU)
        if test is not None:
            featured.insert(0, test)
        return web.json_response({"products": [
            {"sku": p.sku, "name": p.name, "price": _amount(p.price), "url_key": p.url_key}
            for p in featured]})

    def _cart_json(self, session: _Session) -> dict[str, Any]:
        lines = self._session_lines(session)
        return {
            "items_qty": sum(q for _, q in lines),
            "subtotal": _amount(sum((p.price * q for p, q in lines), Decimal(0))),
            "lines": [{"sku": p.sku, "name": p.name, "qty": q, "row_total": _amount(p.price * q)}
                      for p, q in lines],
        }

    async def api_cart(self, request: web.Request) -> web.Response:
        """GET /api/cart: the session cart."""
        return web.json_response(self._cart_json(self._session(request)))

    async def api_cart_add(self, request: web.Request) -> web.Response:
        """POST /api/cart/add {sku, qty}: add to the session cart."""
        if "checkout" in self.in_effect:
            return _rest_error(500, "We can't add this item to your shopping cart right now.")
        data = await _json_object(request)
        sku = data.get("sku") if data is not None else None
        product = self._find_sku(sku) if isinstance(sku, str) else None
        if product is None:
            return _rest_error(404, _NO_PRODUCT)
        qty = _parse_qty(data.get("qty", 1) if data is not None else 1)
        if qty is None:
            return _rest_error(400, "Please enter a number greater than 0 in this field.")
        session = self._session(request)
        session.cart[product.sku] = min(session.cart.get(product.sku, 0) + qty, _MAX_QTY)
        return web.json_response(self._cart_json(session))

    async def api_checkout(self, request: web.Request) -> web.Response:
        """GET /api/checkout: shipping rates and payment methods for the session cart."""
        cart = self._cart_json(self._session(request))
        payment = [] if "payment" in self.in_effect else [
            {"code": code, "title": title} for code, title in _PAYMENT_METHODS]
        return web.json_response({"items_qty": cart["items_qty"],
                                  "shipping": _shipping_rates(cart["items_qty"]),
                                  "payment": payment})

    async def api_order(self, request: web.Request) -> web.Response:
        """POST /api/order: never accepted (a demo store takes no orders)."""
        return _rest_error(403, "This is a demo store: orders are not accepted.")

    # -- small JSON features ---------------------------------------------------------------

    @staticmethod
    def _seed_reviews(product: Product) -> list[dict[str, Any]]:
        count = product.id % 3
        picks = [_REVIEW_POOL[(product.id + i) % len(_REVIEW_POOL)] for i in range(count)]
        return [{"title": title, "rating": rating} for title, rating in picks]

    async def reviews_get(self, request: web.Request) -> web.Response:
        """GET /review/product/{sku}: the product's published reviews."""
        if "reviews" in self.in_effect:
            return _rest_internal_error()
        product = self._find_sku(request.match_info["sku"])
        if product is None:
            return _rest_error(404, _NO_PRODUCT)
        return web.json_response({"sku": product.sku, "reviews": self._seed_reviews(product)})

    async def reviews_post(self, request: web.Request) -> web.Response:
        """POST /review/product/{sku}: accept a review for moderation (it is not published)."""
        if "reviews" in self.in_effect:
            return _rest_internal_error()
        product = self._find_sku(request.match_info["sku"])
        if product is None:
            return _rest_error(404, _NO_PRODUCT)
        data = await _json_object(request)
        if data is None:
            return _rest_error(400, "Decoding error.")
        for name in ("title", "detail"):
            value = data.get(name)
            if not isinstance(value, str) or not value.strip():
                return _rest_error(400, _REQUIRED_FIELD, {"fieldName": name})
        rating = data.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            return _rest_error(400, "The rating must be a whole number from 1 to 5.")
        return web.json_response(
            {"accepted": True, "message": "You submitted your review for moderation."},
            status=201,
        )

    def _wishlist_items(self, session: _Session) -> list[dict[str, Any]]:
        items = []
        for sku in session.wishlist:
            product = catalog.product_by_sku(sku)
            if product is not None:
                items.append({"sku": product.sku, "name": product.name,
                              "price": _amount(product.price)})
        return items

    async def wishlist_get(self, request: web.Request) -> web.Response:
        """GET /wishlist: the session's wish list."""
        return web.json_response({"items": self._wishlist_items(self._session(request))})

    async def wishlist_add(self, request: web.Request) -> web.Response:
        """POST /wishlist/add (form or JSON ``sku``): add a product to the wish list."""
        session = self._session(request)
        sku: object
        if request.content_type == "application/json":
            data = await _json_object(request)
            if data is None:
                return _rest_error(400, "Decoding error.")
            sku = data.get("sku")
        else:
            sku = (await request.post()).get("sku")
        if not isinstance(sku, str) or not sku:
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "sku"})
        product = self._find_sku(sku)
        if product is None:
            return _rest_error(404, _NO_PRODUCT)
        if product.sku not in session.wishlist:
            session.wishlist.append(product.sku)
        return web.json_response({"added": product.sku, "items": self._wishlist_items(session)})

    async def sitemap(self, request: web.Request) -> web.Response:
        """GET /sitemap.xml: home, categories and visible products."""
        origin = str(request.url.origin())
        paths = ["/"] + [f"/category/{c.slug}" for c in catalog.CATEGORIES]
        paths += [f"/product/{p.url_key}" for p in catalog.PRODUCTS if self._visible(p)]
        urls = "\n".join(f"<url><loc>{xml_escape(origin + path)}</loc></url>" for path in paths)
        text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                f"{urls}\n</urlset>\n")
        return web.Response(text=text, content_type="application/xml")

    async def robots(self, request: web.Request) -> web.Response:
        """GET /robots.txt."""
        origin = str(request.url.origin())
        text = ("User-agent: *\nDisallow: /cart\nDisallow: /checkout\nDisallow: /rest/\n"
                f"Disallow: /_demo/\n\nSitemap: {origin}/sitemap.xml\n")
        return web.Response(text=text, content_type="text/plain")

    # -- Magento-style REST ------------------------------------------------------------------

    def _no_cart(self, cart_id: str) -> web.Response:
        return _rest_error(404, "No such entity with %fieldName = %fieldValue",
                           {"fieldName": "cartId", "fieldValue": cart_id})

    @staticmethod
    def _item_json(cart: _GuestCart, line: _CartLine) -> dict[str, Any]:
        return {
            "item_id": line.item_id, "sku": line.product.sku, "qty": line.qty,
            "name": line.product.name, "price": _amount(line.product.price),
            "product_type": "simple", "quote_id": cart.masked_id,
        }

    async def rest_cart_create(self, request: web.Request) -> web.Response:
        """POST /rest/V1/guest-carts: a new guest cart; the body is its masked id as a string."""
        cart = _GuestCart(masked_id=_random_key(32))
        self.guest_carts[cart.masked_id] = cart
        while len(self.guest_carts) > _MAX_GUEST_CARTS:
            self.guest_carts.popitem(last=False)
        return web.json_response(cart.masked_id)

    async def rest_cart_add_item(self, request: web.Request) -> web.Response:
        """POST /rest/V1/guest-carts/{id}/items: add (or merge) a simple product line."""
        if "checkout" in self.in_effect:
            return _rest_internal_error()
        cart_id = request.match_info["cart_id"]
        cart = self._guest_cart(cart_id)
        if cart is None:
            return self._no_cart(cart_id)
        data = await _json_object(request)
        if data is None:
            return _rest_error(400, "Decoding error.")
        item = data.get("cartItem")
        if not isinstance(item, dict):
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "cartItem"})
        sku = item.get("sku")
        if not isinstance(sku, str) or not sku:
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "sku"})
        qty = _parse_qty(item.get("qty", 1))
        if qty is None:
            return _rest_error(400, "Please enter a number greater than 0 in this field.")
        product = self._find_sku(sku)
        if product is None:
            return _rest_error(404, _NO_PRODUCT)
        for line in cart.lines:
            if line.product.sku == product.sku:
                line.qty = min(line.qty + qty, _MAX_QTY)
                return web.json_response(self._item_json(cart, line))
        line = _CartLine(item_id=self.next_item_id, product=product, qty=qty)
        self.next_item_id += 1
        cart.lines.append(line)
        return web.json_response(self._item_json(cart, line))

    async def rest_cart_items(self, request: web.Request) -> web.Response:
        """GET /rest/V1/guest-carts/{id}/items."""
        cart_id = request.match_info["cart_id"]
        cart = self._guest_cart(cart_id)
        if cart is None:
            return self._no_cart(cart_id)
        return web.json_response([self._item_json(cart, line) for line in cart.lines])

    async def rest_cart_delete_item(self, request: web.Request) -> web.Response:
        """DELETE /rest/V1/guest-carts/{id}/items/{itemId}: remove a line; the body is true."""
        cart_id = request.match_info["cart_id"]
        cart = self._guest_cart(cart_id)
        if cart is None:
            return self._no_cart(cart_id)
        raw_id = request.match_info["item_id"]
        for line in cart.lines:
            if str(line.item_id) == raw_id:
                cart.lines.remove(line)
                return web.json_response(True)
        return _rest_error(404, "The %1 Cart doesn't contain the %2 item.", [cart_id, raw_id])

    async def rest_estimate_shipping(self, request: web.Request) -> web.Response:
        """POST /rest/V1/guest-carts/{id}/estimate-shipping-methods ([] for an empty cart)."""
        cart_id = request.match_info["cart_id"]
        cart = self._guest_cart(cart_id)
        if cart is None:
            return self._no_cart(cart_id)
        data = await _json_object(request)
        if data is None:
            return _rest_error(400, "Decoding error.")
        if not isinstance(data.get("address"), dict):
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "address"})
        return web.json_response(_shipping_rates(cart.items_qty()))

    async def rest_payment_methods(self, request: web.Request) -> web.Response:
        """GET /rest/V1/guest-carts/{id}/payment-methods."""
        cart_id = request.match_info["cart_id"]
        if self._guest_cart(cart_id) is None:
            return self._no_cart(cart_id)
        if "payment" in self.in_effect:
            return web.json_response([])
        return web.json_response([{"code": c, "title": t} for c, t in _PAYMENT_METHODS])

    async def rest_totals(self, request: web.Request) -> web.Response:
        """GET /rest/V1/guest-carts/{id}/totals (no shipping selected yet, no tax)."""
        cart_id = request.match_info["cart_id"]
        cart = self._guest_cart(cart_id)
        if cart is None:
            return self._no_cart(cart_id)
        subtotal = _amount(cart.subtotal())
        items = [
            {"item_id": line.item_id, "name": line.product.name, "qty": line.qty,
             "price": _amount(line.product.price), "base_price": _amount(line.product.price),
             "row_total": _amount(line.product.price * line.qty),
             "base_row_total": _amount(line.product.price * line.qty),
             "tax_amount": 0.0, "discount_amount": 0.0}
            for line in cart.lines
        ]
        return web.json_response({
            "grand_total": subtotal, "base_grand_total": subtotal,
            "subtotal": subtotal, "base_subtotal": subtotal,
            "shipping_amount": 0.0, "tax_amount": 0.0, "discount_amount": 0.0,
            "items_qty": cart.items_qty(), "items_count": len(cart.lines),
            "base_currency_code": "USD", "quote_currency_code": "USD",
            "items": items,
            "total_segments": [
                {"code": "subtotal", "title": "Subtotal", "value": subtotal},
                {"code": "shipping", "title": "Shipping & Handling", "value": 0.0},
                {"code": "tax", "title": "Tax", "value": 0.0},
                {"code": "grand_total", "title": "Grand Total", "value": subtotal,
                 "area": "footer"},
            ],
        })

    async def rest_currency(self, request: web.Request) -> web.Response:
        """GET /rest/V1/directory/currency."""
        return web.json_response({
            "base_currency_code": "USD", "base_currency_symbol": "$",
            "default_display_currency_code": "USD", "default_display_currency_symbol": "$",
            "available_currency_codes": ["USD"],
            "exchange_rates": [{"currency_to": "USD", "rate": 1}],
        })

    async def rest_search(self, request: web.Request) -> web.Response:
        """GET /rest/V1/search?searchCriteria[...]: relevance-ordered product ids only."""
        request_name = request.query.get("searchCriteria[requestName]")
        if not request_name:
            return _rest_error(400, _REQUIRED_FIELD, {"fieldName": "requestName"})
        term = ""
        for key, value in request.query.items():
            match = _SEARCH_FIELD_KEY.fullmatch(key)
            if match and value == "search_term":
                group, index = match.groups()
                term = request.query.get(
                    f"searchCriteria[filterGroups][{group}][filters][{index}][value]", "")
                break
        needle = term.strip().lower()
        scored = [
            (round(1.0 + 10.0 * len(needle) / len(p.name), 4), p) for p in self._search(term)
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        return web.json_response({
            "items": [{"id": p.id, "score": score} for score, p in scored],
            "aggregations": {"buckets": [], "bucket_names": []},
            "search_criteria": {
                "request_name": request_name,
                "filter_groups": [{"filters": [
                    {"field": "search_term", "value": term, "condition_type": "eq"},
                ]}],
            },
            "total_count": len(scored),
        })

    async def rest_no_route(self, request: web.Request) -> web.Response:
        """Any other /rest/ path or method: Magento's no-route error."""
        return _rest_error(404, "Request does not match any route.")

    # -- WooCommerce Store API and Shopify Ajax cart (the shapes the recipes use) -----------

    def _woo_cart_json(self, cart: _GuestCart) -> dict[str, Any]:
        rates = [{"rate_id": f"{r['carrier_code']}:{r['method_code']}", "name": r["carrier_title"],
                  "price": str(int(r["amount"] * 100)), "selected": i == 0}
                 for i, r in enumerate(_shipping_rates(cart.items_qty()))]
        return {
            "items": [{"key": str(line.item_id), "id": line.product.id, "quantity": line.qty,
                       "name": line.product.name} for line in cart.lines],
            "items_count": cart.items_qty(), "needs_payment": True, "needs_shipping": True,
            "payment_methods": [] if "payment" in self.in_effect else [c for c, _ in
                                                                    _PAYMENT_METHODS],
            "shipping_rates": [{"package_id": 0, "shipping_rates": rates}],
            "totals": {"total_price": str(int(cart.subtotal() * 100)), "currency_minor_unit": 2},
            "errors": [],
        }

    def _woo_answer(self, cart: _GuestCart, status: int = 200) -> web.Response:
        return web.json_response(self._woo_cart_json(cart), status=status, headers={
            "Cart-Token": cart.masked_id, "Nonce": "demo-nonce"})

    def _woo_cart_of(self, request: web.Request) -> _GuestCart | None:
        if request.headers.get("Nonce") != "demo-nonce":
            return None
        return self._guest_cart(request.headers.get("Cart-Token", ""))

    async def woo_cart(self, request: web.Request) -> web.Response:
        """GET /wp-json/wc/store/v1/cart: a new cart, its Cart-Token and Nonce headers."""
        cart = _GuestCart(masked_id=_random_key(32))
        self.guest_carts[cart.masked_id] = cart
        while len(self.guest_carts) > _MAX_GUEST_CARTS:
            self.guest_carts.popitem(last=False)
        return self._woo_answer(cart)

    async def woo_add_item(self, request: web.Request) -> web.Response:
        """POST .../cart/add-item {"id", "quantity"}: 201 with the cart."""
        cart = self._woo_cart_of(request)
        if cart is None:
            return web.json_response({"code": "woocommerce_rest_missing_nonce",
                                      "message": "Missing the Nonce header.",
                                      "data": {"status": 401}}, status=401)
        data = await _json_object(request)
        product = self._product_by_id(data.get("id") if data else None)
        qty = _parse_qty(data.get("quantity", 1)) if data else None
        if "checkout" in self.in_effect or product is None or qty is None:
            return web.json_response({"code": "woocommerce_rest_cart_invalid_product",
                                      "message": "This product cannot be added to the cart.",
                                      "data": {"status": 400}}, status=400)
        cart.lines.append(_CartLine(item_id=self.next_item_id, product=product, qty=qty))
        self.next_item_id += 1
        return self._woo_answer(cart, 201)

    async def woo_update_customer(self, request: web.Request) -> web.Response:
        """POST .../cart/update-customer: the cart with its shipping rates."""
        cart = self._woo_cart_of(request)
        if cart is None:
            return web.json_response({"code": "woocommerce_rest_missing_nonce",
                                      "message": "Missing the Nonce header.",
                                      "data": {"status": 401}}, status=401)
        return self._woo_answer(cart)

    def _product_by_id(self, raw: object) -> Product | None:
        for product in catalog.PRODUCTS:
            if product.id == raw and not isinstance(raw, bool):
                return product if self._visible(product) else None
        return None

    async def shopify_add(self, request: web.Request) -> web.Response:
        """POST /cart/add.js {"items": [{"id", "quantity"}]}: into the session cart (422 when
        the variant cannot be added)."""
        data = await _json_object(request)
        items = data.get("items") if data else None
        item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) \
            else {}
        product = self._product_by_id(item.get("id"))
        qty = _parse_qty(item.get("quantity", 1))
        if "checkout" in self.in_effect or product is None or qty is None:
            return web.json_response({"status": 422, "message": "Cart Error",
                                      "description": "Cannot find variant"}, status=422)
        session = self._session(request)
        session.cart[product.sku] = min(session.cart.get(product.sku, 0) + qty, _MAX_QTY)
        return web.json_response({"items": [{"id": product.id, "quantity": qty}]})

    async def shopify_cart(self, request: web.Request) -> web.Response:
        """GET /cart.js: the session cart."""
        lines = self._session_lines(self._session(request))
        return web.json_response({
            "item_count": sum(qty for _, qty in lines), "currency": "USD",
            "items": [{"id": p.id, "sku": p.sku, "quantity": qty} for p, qty in lines],
            "total_price": int(sum((p.price * q for p, q in lines), Decimal(0)) * 100)})

    # -- demo control (never affected by faults) -------------------------------------------

    def _faults_json(self) -> web.Response:
        return web.json_response({
            "faults": sorted(self.faults),
            "agents": {name: sorted(faults) for name, faults in sorted(self.agent_faults.items())},
            "available": sorted(FAULTS), "slow_delay_s": self.slow_delay_s,
            "fragile_rejections": self.fragile_rejections, "usage": FAULTS_USAGE})

    async def demo_faults_get(self, request: web.Request) -> web.Response:
        """GET /_demo/faults: the global and per-agent faults, the available ones, and usage."""
        return self._faults_json()

    async def demo_faults_post(self, request: web.Request) -> web.Response:
        """POST /_demo/faults {"faults": [...]}: replace the global set ([] clears it); with
        ``"agents": [...]``, replace the set of each named agent instead; optional
        ``"slow_delay_s": N`` sets the ``slow`` fault's delay."""
        data = await _json_object(request)
        agents = _agent_names(data.get("agents") if data is not None else None)
        if isinstance(agents, str):
            return web.json_response({"error": agents}, status=400)
        delay = data.get("slow_delay_s") if data is not None else None
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, int | float) or \
                    not 0 <= delay <= MAX_SLOW_DELAY_S:
                return web.json_response(
                    {"error": f"slow_delay_s must be a number of seconds, 0-{MAX_SLOW_DELAY_S:g}"},
                    status=400)
            self.slow_delay_s = float(delay)
        names = data.get("faults") if data is not None else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return web.json_response(
                {"error": 'body must be a JSON object {"faults": [names...]}'}, status=400)
        try:
            valid = validate_faults(names)
        except UnknownFaultError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if agents is None:
            self.faults.clear()
            self.faults.update(valid)
        else:
            set_agent_faults(self.agent_faults, agents, valid)
        return self._faults_json()


def set_agent_faults(table: dict[str, frozenset[str]], agents: Iterable[str],
                     faults: frozenset[str]) -> None:
    """Replace the fault set of each agent in ``table`` (an empty set removes its entry)."""
    for agent in agents:
        if faults:
            table[agent] = faults
        else:
            table.pop(agent, None)


def _agent_names(value: object) -> tuple[str, ...] | str | None:
    """The ``agents`` of a fault POST (None when absent), or an error message."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(n, str) and 0 < len(n) <= MAX_AGENT_NAME for n in value):
        return (f'"agents" must be a non-empty list of agent names (1-{MAX_AGENT_NAME} '
                f"characters each, as in their {AGENT_HEADER} header)")
    return tuple(value)


# ---------------------------------------------------------------------------------------------
# Running stores


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


class DemoStore:
    """A running demo store. Use ``start_store()`` to get one; ``close()`` stops it."""

    def __init__(self, shop: _Shop, runner: web.AppRunner, host: str, port: int) -> None:
        self._shop = shop
        self._runner = runner
        self._closed = False
        self.port: int = port
        self.url: str = _url(host, port)
        self.faults: set[str] = shop.faults   # the live set: handlers read it per request
        self.agent_faults: Mapping[str, frozenset[str]] = shop.agent_faults
        """Agent name → its own faults (read-only view; change it with ``set_faults``)."""

    @property
    def slow_delay_s(self) -> float:
        """How long the ``slow`` fault delays each storefront response."""
        return self._shop.slow_delay_s

    @slow_delay_s.setter
    def slow_delay_s(self, seconds: float) -> None:
        if not 0 <= seconds <= MAX_SLOW_DELAY_S:
            raise ValueError(f"slow delay must be 0-{MAX_SLOW_DELAY_S:g}s")
        self._shop.slow_delay_s = seconds

    @property
    def fragile_rejections(self) -> int:
        """Requests the ``fragile`` fault answered 500 so far."""
        return self._shop.fragile_rejections

    def set_faults(self, names: Iterable[str], *, agents: Iterable[str] | None = None) -> None:
        """Replace the global faults, or with ``agents`` the faults of each of those agents
        (validated first; raises UnknownFaultError)."""
        valid = validate_faults(names)
        if agents is None:
            self.faults.clear()
            self.faults.update(valid)
        else:
            set_agent_faults(self._shop.agent_faults, agents, valid)

    async def close(self) -> None:
        """Stop serving; requests held by ``down`` or ``slow`` are cancelled, not awaited."""
        if self._closed:
            return
        self._closed = True
        self._shop.closing = True
        for task in list(self._shop.stalled):
            task.cancel()
        await self._runner.cleanup()

    async def __aenter__(self) -> DemoStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (f"DemoStore(url={self.url!r}, faults={sorted(self.faults)!r}, "
                f"agent_faults={ {a: sorted(f) for a, f in self.agent_faults.items()}!r})")


async def start_store(host: str = "127.0.0.1", port: int = 0,
                      faults: Iterable[str] = (), *, js: bool = False) -> DemoStore:
    """Start a demo store on host:port (0 = an ephemeral port) with the given faults on.

    ``js``: JavaScript mode, home, cart and checkout rendered client-side from ``/api/*``.
    """
    shop = _Shop(set(validate_faults(faults)), js=js)
    runner = web.AppRunner(shop.build_app(), shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    return DemoStore(shop, runner, host, bound_port)


def _fault_label(faults: Iterable[str]) -> str:
    names = sorted(faults)
    return ",".join(names) if names else "none"


async def _serve_until_signal(host: str, port: int, faults: frozenset[str],
                              slow_delay_s: float = SLOW_DELAY_S, js: bool = False) -> int:
    try:
        store = await start_store(host, port, faults, js=js)
        store.slow_delay_s = slow_delay_s
    except OSError as exc:
        print(f"demo store: cannot listen on {host}:{port}: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        mode = ", JavaScript mode" if js else ""
        print(f"demo store listening on {store.url} (faults: {_fault_label(store.faults)}"
              f"{mode})", flush=True)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await store.close()
    return 0


def run_demo_store(host: str, port: int, faults: Sequence[str],
                   slow_delay_s: float = SLOW_DELAY_S, js: bool = False) -> int:
    """Serve a demo store until SIGTERM/SIGINT (blocking); the exit status is returned.

    Prints ``demo store listening on http://HOST:PORT (faults: none|a,b)`` once listening.
    Returns 0 after a signal, 2 for an unknown fault name or slow delay, 1 when the address
    cannot be bound (both with a one-line message on stderr).
    """
    try:
        valid = validate_faults(faults)
    except UnknownFaultError as exc:
        print(f"demo store: {exc}", file=sys.stderr, flush=True)
        return 2
    if not 0 <= slow_delay_s <= MAX_SLOW_DELAY_S:
        print(f"demo store: --slow-delay must be 0-{MAX_SLOW_DELAY_S:g} seconds",
              file=sys.stderr, flush=True)
        return 2
    try:
        return asyncio.run(_serve_until_signal(host, port, valid, slow_delay_s, js))
    except KeyboardInterrupt:   # SIGINT before the handler was installed
        return 0
