"""Fixtures of the sink tests: one shared HTTP client, a clean secret registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from agent.config.secrets import clear_secrets


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The shared tracker client, as the daemon builds it (no redirects, no env proxies)."""
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        yield client


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Sinks register their secrets; forget them after each test."""
    yield
    clear_secrets()
