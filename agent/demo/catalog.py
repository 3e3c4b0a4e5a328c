"""Product data of the demo storefront: three categories, thirty products, one test SKU.

Plain frozen dataclasses and lookup helpers; no I/O. ``Product.position`` is the product's
0-based index inside its category, which the ``catalog`` fault uses to decide deterministically
which products vanish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

TEST_SKU = "DS-TEST-SKU"
"""The dedicated product for synthetic checkouts (never hidden by the ``catalog`` fault)."""


@dataclass(frozen=True, slots=True)
class Category:
    """A catalog category, addressed as ``/category/{slug}``."""

    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class Product:
    """One simple product, addressed as ``/product/{url_key}``."""

    id: int
    sku: str
    url_key: str
    name: str
    price: Decimal
    category: str
    position: int


CATEGORIES: tuple[Category, ...] = (
    Category("tops", "Tops"),
    Category("bottoms", "Bottoms"),
    Category("gear", "Gear"),
)

# (category slug, SKU prefix, [(name, price), ...]); the SKU is PREFIX-NN in list order.
_RAW: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("tops", "DS-TOP", (
        ("Aurora Running Tee", "29.00"),
        ("Breeze Tank Top", "24.00"),
        ("Cascade Hoodie", "64.00"),
        ("Drift Long-Sleeve Tee", "34.00"),
        ("Ember Fleece Jacket", "89.00"),
        ("Fjord Rain Jacket", "129.00"),
        ("Glacier Base Layer", "49.00"),
        ("Harbor Polo Shirt", "39.00"),
        ("Indigo Yoga Tee", "32.00"),
        ("Juniper Quarter-Zip", "59.00"),
        ("Kestrel Windbreaker", "79.00"),
        ("Lumen Performance Tee", "36.00"),
    )),
    ("bottoms", "DS-BOT", (
        ("Alder Trail Shorts", "44.00"),
        ("Basalt Hiking Pants", "79.00"),
        ("Canyon Yoga Pants", "58.00"),
        ("Delta Running Tights", "54.00"),
        ("Estuary Cargo Shorts", "42.00"),
        ("Flint Track Pants", "62.00"),
        ("Granite Climbing Pants", "84.00"),
        ("Heron Board Shorts", "38.00"),
        ("Iris Capri Leggings", "46.00"),
        ("Jasper Joggers", "52.00"),
    )),
    ("gear", "DS-GEAR", (
        ("Atlas Daypack", "69.00"),
        ("Beacon Water Bottle", "19.00"),
        ("Compass Yoga Mat", "35.00"),
        ("Dune Duffel Bag", "74.00"),
        ("Echo Fitness Tracker", "119.00"),
        ("Falcon Trekking Poles", "89.00"),
        ("Glow Headlamp", "27.00"),
    )),
)


def _url_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _build() -> tuple[Product, ...]:
    products: list[Product] = []
    for slug, prefix, items in _RAW:
        for position, (name, price) in enumerate(items):
            products.append(Product(
                id=len(products) + 1, sku=f"{prefix}-{position + 1:02d}", url_key=_url_key(name),
                name=name, price=Decimal(price), category=slug, position=position,
            ))
    gear_count = sum(1 for p in products if p.category == "gear")
    products.append(Product(
        id=len(products) + 1, sku=TEST_SKU, url_key="demo-test-product",
        name="Demo Test Product", price=Decimal("1.00"), category="gear", position=gear_count,
    ))
    return tuple(products)


PRODUCTS: tuple[Product, ...] = _build()
"""All products, in category order then position order."""

_BY_SKU: dict[str, Product] = {p.sku: p for p in PRODUCTS}
_BY_URL_KEY: dict[str, Product] = {p.url_key: p for p in PRODUCTS}
_BY_SLUG: dict[str, Category] = {c.slug: c for c in CATEGORIES}


def category_by_slug(slug: str) -> Category | None:
    """The category with this slug, or None."""
    return _BY_SLUG.get(slug)


def product_by_sku(sku: str) -> Product | None:
    """The product with this SKU (exact match), or None."""
    return _BY_SKU.get(sku)


def product_by_url_key(url_key: str) -> Product | None:
    """The product with this URL key, or None."""
    return _BY_URL_KEY.get(url_key)


def products_in(slug: str) -> tuple[Product, ...]:
    """The products of one category, in position order (empty for an unknown slug)."""
    return tuple(p for p in PRODUCTS if p.category == slug)
