"""The example config's host section loads as documented."""

from __future__ import annotations

from agent.config.loader import load_config
from agent.config.schema import Config
from tests.conftest import ROOT


def test_example_config_host_section() -> None:
    config = load_config(ROOT / "config" / "storewatch.example.yaml", Config,
                         env={"SHOP_API_TOKEN": "t"})
    host = config.host
    assert host is not None and host.site == "example-shop"
    assert [s.name for s in host.services] == ["nginx", "php-fpm", "database", "opensearch"]
    assert host.mail_queue is not None and host.mail_queue.max_age == 1800.0
    assert not host.filesystems.include_network
