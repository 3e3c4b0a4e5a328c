"""The example configs under config/examples load and use the check types they show."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.config.schema import Config

ALL_EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config" / "examples")
                      .glob("*.yaml"))
FEATURE_EXAMPLES = ("demo-browser",)
EXAMPLES = [p for p in ALL_EXAMPLES if p.stem not in FEATURE_EXAMPLES]
"""One example per platform preset or named shop; the others (demo-browser.yaml) show one
feature."""


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=[p.stem for p in ALL_EXAMPLES])
def test_every_example_loads(path: Path) -> None:
    assert load_config(path, Config, env={}).sites


PLATFORM_OF = {"evershop": "generic"}
"""Examples of a named shop described with the generic forms (tests/realshop runs evershop)."""


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_valid(path: Path) -> None:
    config = load_config(path, Config, env={})
    site = config.sites[0]
    assert site.platform == PLATFORM_OF.get(path.stem, path.stem)
    assert {"checkout", "catalog", "search", "integrity", "security"} <= {
        c.type for c in site.checks}


def test_one_example_per_platform() -> None:
    assert [p.stem for p in EXAMPLES] == ["evershop", "generic", "magento2", "shopify",
                                          "woocommerce"]
