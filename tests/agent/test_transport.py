"""The lean transport under the shared clients, over real loopback sockets."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import respx
from aiohttp import web

from agent.httpclient import FetchResult, HttpClients, fetch
from agent.transport import LeanTransport
from tests.agent.servers import serve
from tests.conftest import TLSMaterial


async def test_shared_client_uses_the_lean_transport(clients: HttpClients) -> None:
    assert isinstance(clients.get()._transport, LeanTransport)


async def test_cookies_are_not_carried_between_probes(clients: HttpClients) -> None:
    seen: list[str | None] = []

    async def shop(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "abc123")
        return response

    async with serve({"/": shop}) as url:
        client = clients.get()
        for _ in range(2):
            result = await fetch(client, url + "/", timeout=2, max_body_bytes=1000,
                                 max_redirects=0)
            assert isinstance(result, FetchResult)
            assert "session=abc123" in result.headers["set-cookie"]
    assert seen == [None, None]
    assert len(client.cookies) == 0


async def _raw_server(response: bytes) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


@pytest.mark.parametrize(
    ("method", "raw", "status", "body"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 200,
         b"until the end"),
        ("GET", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 200, b""),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
    ],
    ids=["body-until-close", "informational-skipped", "head-no-body", "no-content"],
)
async def test_response_framing(clients: HttpClients, method: str, raw: bytes, status: int,
                                body: bytes) -> None:
    server, url = await _raw_server(raw)
    async with server:
        result = await fetch(clients.get(), url, method=method, timeout=2, max_body_bytes=1000,
                             max_redirects=0)
    assert isinstance(result, FetchResult), result
    assert (result.status, result.body) == (status, body)


@pytest.mark.parametrize(
    ("raw", "failure"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "protocol"),
        (b"NOT HTTP AT ALL\r\n\r\n", "protocol"),
        (b"", "protocol"),
    ],
    ids=["cut-off-body", "garbage", "closed-without-answer"],
)
async def test_broken_responses_are_protocol_errors(clients: HttpClients, raw: bytes,
                                                    failure: str) -> None:
    server, url = await _raw_server(raw)
    async with server:
        result = await fetch(clients.get(), url, timeout=2, max_body_bytes=1000,
                             max_redirects=0)
    assert not isinstance(result, FetchResult)
    assert result.failure.value == failure


async def test_read_timeout_of_the_transport(clients: HttpClients) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await clients.get().get(url, timeout=0.2)


async def test_transport_is_injected_not_switched_by_respx() -> None:
    """Tests inject a transport; an active respx mock no longer reroutes the shared clients
    away from the production transport."""
    router = respx.MockRouter(assert_all_called=False)
    router.get("https://tickets.example.com/ok").mock(
        return_value=httpx.Response(200, text="fine"))
    injected = HttpClients("storewatch-test", env={},
                           transport=lambda ctx, rules: httpx.MockTransport(router.async_handler))
    real = HttpClients("storewatch-test", env={})

    async def shop(request: web.Request) -> web.StreamResponse:
        return web.Response(text="real socket")

    try:
        result = await fetch(injected.get(), "https://tickets.example.com/ok", timeout=2,
                             max_body_bytes=100, max_redirects=0)
        async with serve({"/": shop}) as url:
            with respx.mock(using="httpcore", assert_all_called=False):
                direct = await fetch(real.get(), url + "/", timeout=2, max_body_bytes=100,
                                     max_redirects=0)
    finally:
        await injected.aclose()
        await real.aclose()
    assert isinstance(result, FetchResult)
    assert (result.status, result.body) == (200, b"fine")
    assert isinstance(direct, FetchResult), direct
    assert direct.body == b"real socket"


@pytest.mark.parametrize(("trusted", "failure"), [(True, None), (False, "tls")],
                         ids=["ca-in-os-store", "ca-not-in-os-store"])
async def test_default_trust_is_the_os_store(tls_material: TLSMaterial, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, trusted: bool,
                                             failure: str | None) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "placeholder.pem").write_bytes(b"")
    if trusted:
        shutil.copy(tls_material.ca_cert, store / "bench-ca.pem")
    else:  # another CA, so the directory still holds a hashed certificate
        shutil.copy(tls_material.selfsigned_cert, store / "other.pem")
    subprocess.run(["openssl", "rehash", str(store)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_DIR", str(store))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(tls_material.leaf_cert), str(tls_material.key))

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    stack = HttpClients("storewatch-test")
    try:
        async with serve({"/": ok}, server_ctx) as url:
            result = await fetch(stack.get(), url + "/", timeout=2, max_body_bytes=100,
                                 max_redirects=0)
    finally:
        await stack.aclose()
    if failure is None:
        assert isinstance(result, FetchResult), result
        assert result.cert_not_after is not None
    else:
        assert not isinstance(result, FetchResult)
        assert result.failure.value == failure
