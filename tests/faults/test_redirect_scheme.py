"""A redirect to a scheme the agent does not follow (file:, ftp:, javascript:) is a finding that
names the scheme, never an empty one."""

from __future__ import annotations

import pytest
from aiohttp import web

from agent.httpclient import FetchError, FetchFailure, HttpClients, fetch
from tests.agent.servers import serve


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x",
                                    "javascript:alert(1)"])
async def test_redirect_to_another_scheme_names_it(target: str) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    clients = HttpClients("storewatch-test")
    try:
        async with serve({"/": redirect}) as base:
            result = await fetch(clients.get(), base + "/", timeout=5, max_body_bytes=1000,
                                 max_redirects=5)
    finally:
        await clients.aclose()
    assert isinstance(result, FetchError)
    assert result.failure is FetchFailure.PROTOCOL
    scheme = target.split(":", 1)[0]
    assert f"redirect to unsupported URL scheme '{scheme}'" in result.message
    assert result.url == target
