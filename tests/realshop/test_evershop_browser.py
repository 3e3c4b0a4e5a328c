"""Browser journeys on a real JavaScript storefront: EverShop's add-to-cart, mini cart, cart and
checkout (shipping methods appear once the address is given) in the real Chromium, with the
browser-only faults injected at the shop's level (tests/realshop/evershop_preload.cjs): a broken
bundle, a script error on add-to-cart, a skimmer injected at run time and a late largest paint.

Healthy runs are clean despite the shop's own noise (its checkout requests Stripe's CDN, which
fails offline); each fault is its kind and level with a screenshot while the shop's HTML stays
200 and its HTTP availability checks stay green.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.browser.runtime import close_shared_runtime, configure
from agent.config.schema import BrowserSettings, Config
from agent.httpclient import HttpClients
from agent.pipeline import Classifier
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from agent.state.baselines import BaselineStore
from classifier import FindingKind as K
from tests.realshop.evershop import TEST_PRODUCT_PATH, EverShop

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")]

PRODUCT_NAME = "Ceramic Coffee Cup - White"
JOURNEY: dict[str, Any] = {
    "name": "journey", "type": "browser", "learn_runs": 0,
    "allow": ["https://js.stripe.com"],   # the shop's payment provider (disabled, offline here)
    "steps": [
        {"name": "product", "goto": TEST_PRODUCT_PATH,
         "wait_for": {"selector": 'button:has-text("Add to cart")'}},
        {"name": "variant", "click": 'button:has-text("White")', "wait_for": {"url": "color="}},
        {"name": "add-to-cart", "click": 'button:has-text("Add to cart")',
         "wait_for": {"selector": ".minicart__items__container"},
         "expect": {"text": [PRODUCT_NAME],
                    "selector": ["button.mini-cart-icon[aria-label*='with 1 item']"]}},
        {"name": "cart", "goto": "/cart", "wait_for": {"text": "Proceed to checkout"},
         "expect": {"text": [PRODUCT_NAME]}},
        {"name": "checkout", "goto": "/checkout",
         "wait_for": {"selector": "input[name='shippingAddress.postcode']"},
         "expect": {"text": ["Cash On Delivery"]}},
        {"name": "country", "click": 'button[role=combobox]:has-text("Country")',
         "wait_for": {"selector": '[role=option]:has-text("United States")'}},
        {"name": "country-us", "click": '[role=option]:has-text("United States")'},
        {"name": "province", "click": 'button[role=combobox]:has-text("Province")',
         "wait_for": {"selector": '[role=option]:has-text("California")'}},
        {"name": "province-ca", "click": '[role=option]:has-text("California")'},
        {"name": "postcode", "fill": {"selector": "input[name='shippingAddress.postcode']",
                                      "value": "90001"},
         "wait_for": {"text": "Flat rate", "timeout": 15}},
    ],
}


def config(shop: EverShop) -> Config:
    return Config.model_validate({"sites": [{"name": "evershop", "base_url": shop.base_url,
                                             "checks": [
                                                 {"name": "product-page",
                                                  "path": TEST_PRODUCT_PATH},
                                                 JOURNEY]}]})


@pytest.fixture
async def browser() -> AsyncIterator[None]:
    configure(BrowserSettings(executable_path=CHROMIUM))
    yield
    await close_shared_runtime()


async def run(cfg: Config, check: str, baselines: BaselineStore) -> ProbeResult:
    site = cfg.sites[0]
    spec = next(c for c in site.checks if c.name == check)
    clients = HttpClients("storewatch-test")
    try:
        return await run_guarded(PROBES[spec.type], spec,
                                 ProbeContext(clients, site, 90.0, baselines=baselines))
    finally:
        await clients.aclose()


@pytest.fixture
def baselines(tmp_path: Path) -> Iterator[BaselineStore]:
    store = BaselineStore.open(tmp_path / "state")
    assert store is not None
    yield store
    store.close()


@pytest.mark.usefixtures("browser")
async def test_healthy_evershop_journey_is_clean_ten_runs_in_a_row(
        evershop_shop: EverShop, baselines: BaselineStore) -> None:
    cfg = config(evershop_shop)
    for i in range(10):
        result = await run(cfg, "journey", baselines)
        assert result.findings == (), f"run {i + 1}: {result.findings}"
        assert result.measurements["page_errors"] == 0


@pytest.mark.usefixtures("browser")
@pytest.mark.parametrize(("fault", "kind", "level"), [
    pytest.param("js_bundle", K.CHECKOUT_BROKEN, 1, id="js_bundle"),
    pytest.param("js_error", K.CHECKOUT_BROKEN, 1, id="js_error"),
    pytest.param("skimmer_dynamic", K.SECURITY_BREACH, 1, id="skimmer_dynamic"),
    pytest.param("slow_render", K.SLOW_RESPONSE, 3, id="slow_render"),
])
async def test_browser_only_fault_on_evershop(evershop_shop: EverShop, baselines: BaselineStore,
                                              fault: str, kind: K, level: int) -> None:
    cfg = config(evershop_shop)
    evershop_shop.set_faults(**{fault: True})
    with httpx.Client(base_url=evershop_shop.base_url, follow_redirects=True) as http:
        assert http.get(TEST_PRODUCT_PATH).status_code == 200
    page = await run(cfg, "product-page", baselines)
    assert page.success, page.findings
    result = await run(cfg, "journey", baselines)
    observed = Classifier(cfg).observe(result)
    assert [(c.finding.kind, c.decision.level) for c in observed.classified] == \
        [(kind, level)], result.findings
    finding = result.findings[0]
    assert Path(finding.evidence.details["screenshot"]).read_bytes()[:4] == b"\x89PNG"
    if fault == "skimmer_dynamic":
        chain = finding.evidence.details["initiator_chain"]
        assert "localhost" in chain and "/checkout" in chain
    if fault == "slow_render":  # the late paint, on the product page the journey opens
        assert finding.evidence.details["metric"] == "lcp"
        assert float(finding.evidence.details["value"]) > 4.0
        assert TEST_PRODUCT_PATH in (finding.evidence.url or "")
    print(f"\n{fault}: {kind.value} L{level}: {finding.summary}")
