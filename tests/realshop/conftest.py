"""Fixtures of the real-shop tests: one EverShop per test session (tests/realshop/evershop.py).

``evershop``: the running shop (session scope; installing + building it the first time takes a
few minutes, later sessions reuse the cache and start in about a minute).
``evershop_shop``: the same shop, made healthy again after the test (faults cleared, products
republished, the process restarted if a test stopped it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realshop.evershop import EverShop, running_evershop


@pytest.fixture(scope="session")
def evershop() -> Iterator[EverShop]:
    """A provisioned EverShop on loopback for the whole session."""
    with running_evershop() as shop:
        yield shop


@pytest.fixture
def evershop_shop(evershop: EverShop) -> Iterator[EverShop]:
    """The session's EverShop, healthy again after each test."""
    evershop.clear_faults()
    evershop.start()
    try:
        yield evershop
    finally:
        evershop.clear_faults()
        if not evershop.running:
            evershop.start()
        if evershop.unpublished:
            for sku in list(evershop.unpublished):
                evershop.set_published(sku, True)
