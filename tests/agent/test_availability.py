"""The availability probe over real sockets: the demo store, purpose-built servers, real TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agent.config.schema import Config
from agent.demo.storefront import SLOW_DELAY_S, DemoStore
from agent.httpclient import HttpClients
from agent.probes.availability import probe_availability
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from classifier import FindingKind
from tests.agent.servers import free_port, serve
from tests.conftest import TLSMaterial

K = FindingKind


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()


def site_config(base_url: str, check: dict[str, Any] | None = None,
                **site: Any) -> Config:
    spec = {"name": "c", "type": "availability", **(check or {})}
    return Config.model_validate({"sites": [{"name": "shop", "base_url": base_url,
                                             "checks": [spec], **site}]})


async def probe(clients: HttpClients, config: Config, timeout: float = 2.0) -> ProbeResult:
    site = config.sites[0]
    ctx = ProbeContext(clients, site, timeout)
    return await run_guarded(probe_availability, site.checks[0], ctx)  # type: ignore[arg-type]


def kinds(result: ProbeResult) -> list[FindingKind]:
    return [f.kind for f in result.findings]


async def test_healthy_home_page(store: DemoStore, clients: HttpClients) -> None:
    cfg = site_config(store.url, {"body_contains": ["Demo Outfitters"],
                                  "selector": "main#maincontent", "latency_threshold": "2s"})
    result = await probe(clients, cfg)
    assert result.success, result.findings
    assert result.measurements["http_status"] == 200
    assert result.measurements["body_bytes"] > 500
    assert {s.name for s in result.steps} == {"response", "total"}


@pytest.mark.parametrize(
    ("fault", "path", "kind", "summary"),
    [
        ("server_error", "/", K.SITE_DOWN, "home page answered HTTP 503"),
        ("server_error", "/category/tops", K.PARTIAL_OUTAGE,
         "page /category/tops answered HTTP 503"),
        ("down", "/", K.SITE_DOWN,
         "home page unreachable: no complete response within the request timeout of 0.5s"),
    ],
    ids=["5xx-home", "5xx-page", "down-timeout"],
)
async def test_store_faults(store: DemoStore, clients: HttpClients, fault: str, path: str,
                            kind: FindingKind, summary: str) -> None:
    store.set_faults([fault])
    result = await probe(clients, site_config(store.url, {"path": path}), timeout=0.5)
    assert kinds(result) == [kind]
    assert result.findings[0].summary.startswith(summary)
    assert not result.success


async def test_down_store_probe_ends_within_its_deadline(store: DemoStore,
                                                         clients: HttpClients) -> None:
    store.set_faults(["down"])
    loop = asyncio.get_running_loop()
    start = loop.time()
    await probe(clients, site_config(store.url), timeout=0.5)
    assert loop.time() - start < 1.5


async def test_slow_store_is_slow_response(store: DemoStore, clients: HttpClients) -> None:
    store.set_faults(["slow"])
    result = await probe(clients, site_config(store.url, {"latency_threshold": "1s"}),
                         timeout=SLOW_DELAY_S + 2)
    assert kinds(result) == [K.SLOW_RESPONSE]
    assert result.findings[0].facts["threshold"] == 1.0
    assert result.findings[0].facts["seconds"] >= SLOW_DELAY_S


async def test_connection_refused_is_site_down(clients: HttpClients) -> None:
    port = await free_port()
    result = await probe(clients, site_config(f"http://127.0.0.1:{port}"))
    assert kinds(result) == [K.SITE_DOWN]
    assert "connection failed" in result.findings[0].summary
    assert result.findings[0].evidence.details["failure"] == "connect"


async def test_dns_failure_is_site_down(clients: HttpClients) -> None:
    result = await probe(clients, site_config("http://shop.invalid"))
    assert kinds(result) == [K.SITE_DOWN]
    assert result.findings[0].evidence.details["failure"] == "dns"


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ({"body_contains": ["Closed for good"]}, "missing text 'Closed for good'"),
        ({"body_not_contains": ["Demo Outfitters"]}, "unwanted text 'Demo Outfitters'"),
        ({"body_matches": [r"\d{9} products"]}, r"no match for /\d{9} products/"),
        ({"body_not_matches": [r"Demo\s+Outfitters"]}, r"unwanted match /Demo\s+Outfitters/"),
        ({"selector": "div.no-such-block"}, "no element matches selector 'div.no-such-block'"),
    ],
    ids=["contains", "not-contains", "matches", "not-matches", "selector"],
)
async def test_content_assertions_report_page_corrupted(store: DemoStore, clients: HttpClients,
                                                       check: dict[str, Any],
                                                       problem: str) -> None:
    result = await probe(clients, site_config(store.url, check))
    assert kinds(result) == [K.PAGE_CORRUPTED]
    assert problem in result.findings[0].summary
    assert result.findings[0].evidence.status == 200


async def test_unexpected_status_on_home_is_site_down(store: DemoStore,
                                                      clients: HttpClients) -> None:
    result = await probe(clients, site_config(store.url, {"path": "/no-such-page",
                                                          "role": "home"}))
    assert kinds(result) == [K.SITE_DOWN]
    assert "HTTP 404 (expected 200)" in result.findings[0].summary


async def test_body_is_read_with_a_cap(clients: HttpClients) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"x" * 65536
        for _ in range(200):  # 13 MB on offer
            await resp.write(chunk)
        return resp

    async with serve({"/": huge}) as url:
        result = await probe(clients, site_config(url, {"max_body_bytes": "100KiB",
                                                        "body_contains": ["never"]}))
    assert result.measurements["body_bytes"] == 100 * 1024
    assert "body truncated at 102400 bytes" in result.findings[0].summary


async def test_redirects_are_bounded(clients: HttpClients) -> None:
    async def loop_(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    async with serve({"/loop": loop_, "/": loop_}) as url:
        result = await probe(clients, site_config(url, {"max_redirects": 3}))
    assert kinds(result) == [K.SITE_DOWN]
    assert "more than 3 redirects" in result.findings[0].summary


async def test_redirect_followed_within_limit(store: DemoStore, clients: HttpClients) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(store.url + "/")

    async with serve({"/": moved}) as url:
        result = await probe(clients, site_config(url, {"body_contains": ["Demo Outfitters"]}))
    assert result.success, result.findings
    assert result.measurements["redirects"] == 1


async def test_credentials_are_not_sent_to_another_host(clients: HttpClients) -> None:
    seen: dict[str, dict[str, str]] = {}

    async def record(request: web.Request) -> web.StreamResponse:
        seen[request.host] = dict(request.headers)
        return web.Response(text="ok")

    async with serve({"/": record}) as other:
        other_url = other.replace("127.0.0.1", "localhost")

        async def bounce(request: web.Request) -> web.StreamResponse:
            seen["origin"] = dict(request.headers)
            raise web.HTTPFound(other_url + "/")

        async with serve({"/": bounce}) as origin:
            cfg = site_config(origin, {"headers": {"Authorization": "Bearer s3cr3t-token",
                                                   "X-Api-Key": "k3y-value", "X-Trace": "1"}})
            result = await probe(clients, cfg)
    assert result.success, result.findings
    assert seen["origin"]["Authorization"] == "Bearer s3cr3t-token"
    (landed,) = [h for k, h in seen.items() if k != "origin"]
    assert "Authorization" not in landed and "X-Api-Key" not in landed
    assert landed["X-Trace"] == "1"


def _tls_server(cert: object, key: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><main id='maincontent'>shop</main></html>",
                        content_type="text/html")


async def test_tls_expiry_is_measured(tls_material: TLSMaterial, clients: HttpClients) -> None:
    async with serve({"/": _ok}, _tls_server(tls_material.leaf_cert, tls_material.key)) as url:
        cfg = site_config(url, tls={"ca_file": str(tls_material.ca_cert)})
        result = await probe(clients, cfg)
    assert result.success, result.findings
    days = (result.measurements["tls_cert_expiry_timestamp_seconds"]
            - result.started_at.timestamp()) / 86400
    assert 59 < days <= 60.01


async def test_certificate_near_expiry(tls_material: TLSMaterial, clients: HttpClients) -> None:
    async with serve({"/": _ok}, _tls_server(tls_material.short_cert, tls_material.key)) as url:
        cfg = site_config(url, tls={"ca_file": str(tls_material.ca_cert)})
        result = await probe(clients, cfg)
    assert kinds(result) == [K.TLS_EXPIRING]
    assert 2 < result.findings[0].facts["days_left"] <= 3.01


async def test_untrusted_certificate_is_site_down(tls_material: TLSMaterial,
                                                  clients: HttpClients) -> None:
    server_ctx = _tls_server(tls_material.selfsigned_cert, tls_material.key)
    async with serve({"/": _ok}, server_ctx) as url:
        verified = await probe(clients, site_config(url, tls={"ca_file": str(
            tls_material.ca_cert)}))
        unverified = await probe(clients, site_config(url, tls={"verify": False}))
    assert kinds(verified) == [K.SITE_DOWN]
    assert verified.findings[0].evidence.details["failure"] == "tls"
    assert "certificate verify failed" in verified.findings[0].summary
    assert unverified.success, unverified.findings


async def test_clients_are_shared_per_tls_setting(store: DemoStore, clients: HttpClients) -> None:
    for _ in range(5):
        await probe(clients, site_config(store.url))
    await probe(clients, site_config(store.url, tls={"verify": False}))
    assert len(clients) == 2
