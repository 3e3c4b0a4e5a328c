"""Platform presets: each platform's public guest flow expressed as generic steps and counters.

``platform: magento2 | woocommerce | shopify | generic`` on a site turns a few parameters (a
SKU, a product id, a variant id, a product page; a search term; a category) into the same step
lists and counters a support engineer could write by hand (see the README). Facts about the
flows: /work/shared/reference/storefront-apis.md. None of them ever places an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from agent.config.schema import (
    CatalogCheck,
    Counter,
    MethodList,
    Recipe,
    Step,
    StepsCheck,
)
from classifier import FindingKind

Platform = str
DEGRADED = FindingKind.BUSINESS_LOGIC_DEGRADED.value
WOO_STORE = "/wp-json/wc/store/v1"
MAGENTO_CART = "/rest/V1/guest-carts/{{cart_id}}"


@dataclass(frozen=True, slots=True)
class Flow:
    """A checkout flow: steps, then where payment and shipping methods are listed."""

    steps: list[Step]
    payment: MethodList | None
    shipping: MethodList | None


def _steps(*raw: dict[str, Any]) -> list[Step]:
    return [Step.model_validate(s) for s in raw]


def _methods(step: str, *, json_path: str | None = None, css: str | None = None,
             attribute: str | None = None, expected: list[str] | None = None) -> MethodList:
    data: dict[str, Any] = {"step": step, "expected": expected or []}
    if json_path is not None:
        data["json"] = json_path
    if css is not None:
        data["css"] = css
        data["attribute"] = attribute
    return MethodList.model_validate(data)


def magento2_flow(r: Recipe) -> Flow:
    """Magento 2 guest-cart REST: create cart, add the SKU, estimate shipping, list payment."""
    address = {"address": {"country_id": r.country, "postcode": r.postcode}}
    steps = _steps(
        {"name": "create-cart", "method": "POST", "path": "/rest/V1/guest-carts",
         "extract": {"cart_id": {"json": "$"}}},
        {"name": "add-to-cart", "method": "POST", "path": MAGENTO_CART + "/items",
         "json": {"cartItem": {"sku": r.sku, "qty": 1, "quote_id": "{{cart_id}}"}},
         "expect": {"json": [{"path": "$.sku", "equals": r.sku}]},
         "extract": {"item_id": {"json": "$.item_id"}}},
        {"name": "cart-items", "path": MAGENTO_CART + "/items",
         "expect": {"count": [{"json": "$[*]", "min": 1}]}},
        {"name": "estimate-shipping", "method": "POST",
         "path": MAGENTO_CART + "/estimate-shipping-methods", "json": address,
         "kind": DEGRADED, "continue_on_failure": True},
        {"name": "payment-methods", "path": MAGENTO_CART + "/payment-methods"},
    )
    return Flow(steps, _methods("payment-methods", json_path="$[*].code",
                                expected=r.expected_payment),
                _methods("estimate-shipping", json_path="$[*].method_code"))


def woocommerce_flow(r: Recipe) -> Flow:
    """WooCommerce Store API: cart (Cart-Token, Nonce), add-item, update-customer for rates."""
    headers = {"Cart-Token": "{{cart_token}}", "Nonce": "{{nonce}}"}
    steps = _steps(
        {"name": "cart", "path": f"{WOO_STORE}/cart",
         "extract": {"cart_token": {"header": "Cart-Token"}, "nonce": {"header": "Nonce"}}},
        {"name": "add-to-cart", "method": "POST", "path": f"{WOO_STORE}/cart/add-item",
         "headers": headers, "json": {"id": r.product_id, "quantity": 1},
         "expect": {"status": [200, 201], "json": [{"path": "$.items_count", "min": 1}]}},
        {"name": "estimate-shipping", "method": "POST",
         "path": f"{WOO_STORE}/cart/update-customer", "headers": headers,
         "json": {"shipping_address": {"country": r.country, "postcode": r.postcode}},
         "kind": DEGRADED, "continue_on_failure": True},
    )
    return Flow(steps, _methods("add-to-cart", json_path="$.payment_methods[*]",
                                expected=r.expected_payment),
                _methods("estimate-shipping",
                         json_path="$.shipping_rates[*].shipping_rates[*].rate_id"))


def shopify_flow(r: Recipe) -> Flow:
    """Shopify Ajax cart: add.js, cart.js, then /checkout must open a checkout session.

    Shopify's checkout is a JS app: payment methods are not visible to a probe.
    """
    steps = _steps(
        {"name": "add-to-cart", "method": "POST", "path": "/cart/add.js",
         "json": {"items": [{"id": r.variant_id, "quantity": 1}]}},
        {"name": "cart", "path": "/cart.js",
         "expect": {"json": [{"path": "$.item_count", "min": 1}]}},
        {"name": "checkout", "path": "/checkout", "expect": {"matches": ["(?i)checkout"]}},
    )
    return Flow(steps, None, None)


def generic_flow(r: Recipe) -> Flow:
    """Any HTML shop: product page, submit its add-to-cart form, cart page, checkout page."""
    steps = _steps(
        {"name": "product-page", "path": r.product_path,
         "expect": {"selector": [r.add_to_cart_form]}},
        {"name": "add-to-cart", "submit_form": r.add_to_cart_form},
        {"name": "cart", "path": r.cart_path, "expect": {"count": [{"css": r.cart_item}]}},
        {"name": "checkout", "path": r.checkout_path},
    )
    return Flow(steps, _methods("checkout", css=r.payment_method, attribute=r.payment_attribute,
                                expected=r.expected_payment),
                _methods("checkout", css=r.shipping_method, attribute="value"))


FLOWS = {"magento2": magento2_flow, "woocommerce": woocommerce_flow,
         "shopify": shopify_flow, "generic": generic_flow}
_REQUIRED = {"magento2": "sku", "woocommerce": "product_id", "shopify": "variant_id",
             "generic": "product_path"}


def recipe_flow(platform: Platform, recipe: Recipe) -> Flow:
    """The checkout flow of ``platform`` for ``recipe``'s parameters."""
    return FLOWS[platform](recipe)


def search_preset(platform: Platform, term: str) -> tuple[str, Counter]:
    """Path and counter of ``platform``'s search for ``term``."""
    q = quote(term)
    match platform:
        case "magento2":
            return f"/catalogsearch/result/?q={q}", Counter(css="li.product-item")
        case "woocommerce":
            return f"{WOO_STORE}/products?search={q}&per_page=1", Counter(header="X-WP-Total")
        case "shopify":
            return (f"/search/suggest.json?q={q}&resources[type]=product&resources[limit]=10",
                    Counter.model_validate({"json": "$.resources.results.products[*]"}))
    return f"/search?q={q}", Counter(json_ld=True)


def catalog_preset(platform: Platform, category: str) -> tuple[str, Counter]:
    """Path and counter of ``platform``'s listing of ``category`` (path, id or handle)."""
    match platform:
        case "magento2":
            return category, Counter(css="li.product-item")
        case "woocommerce":
            return (f"{WOO_STORE}/products?category={quote(category)}&per_page=1",
                    Counter(header="X-WP-Total"))
        case "shopify":
            return (f"/collections/{quote(category)}/products.json?limit=250",
                    Counter.model_validate({"json": "$.products[*]"}))
    return category, Counter(json_ld=True)


def recipe_problem(platform: Platform, check: object) -> tuple[tuple[str | int, ...], str] | None:
    """Why ``check``'s preset parameters do not fit ``platform`` (field path, message)."""
    if isinstance(check, StepsCheck) and check.recipe is not None:
        needed = _REQUIRED[platform]
        if getattr(check.recipe, needed) is None:
            return ("recipe",), f"platform {platform} needs recipe.{needed}"
        others = sorted(k for k in set(_REQUIRED.values()) - {needed}
                        if getattr(check.recipe, k) is not None)
        if others:
            return ("recipe", others[0]), f"not used by platform {platform} (it uses {needed})"
    if isinstance(check, CatalogCheck) and check.category is not None \
            and platform in ("magento2", "generic") and not check.category.startswith("/"):
        return ("category",), (f"platform {platform} needs the category page's path, "
                               "e.g. /gear.html")
    return None
