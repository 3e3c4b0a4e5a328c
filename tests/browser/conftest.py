"""Fixtures of the browser tests: the demo store in JavaScript mode and the real Chromium."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.browser.runtime import close_shared_runtime, configure
from agent.config.schema import BrowserSettings
from agent.demo.storefront import DemoStore, start_store
from agent.httpclient import HttpClients
from agent.state.baselines import BaselineStore

CHROMIUM = Path("/usr/bin/chromium")

if shutil.which(str(CHROMIUM)) is None:  # .ci/run installs it; a developer may not have it
    pytest.skip("Debian chromium is not installed (apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture
async def js_store() -> AsyncIterator[DemoStore]:
    """A healthy demo store in JavaScript mode on an ephemeral loopback port."""
    shop = await start_store("127.0.0.1", 0, js=True)
    try:
        yield shop
    finally:
        await shop.close()


@pytest.fixture
async def shared_browser() -> AsyncIterator[None]:
    """The process's shared browser runtime, closed (browser stopped) after the test."""
    configure(BrowserSettings(executable_path=CHROMIUM))
    yield
    await close_shared_runtime()


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()


@pytest.fixture
def baselines(tmp_path: Path) -> Iterator[BaselineStore]:
    store = BaselineStore.open(tmp_path / "state")
    assert store is not None
    yield store
    store.close()
