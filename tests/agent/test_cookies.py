"""Cookies like a browser (issue 11.5) and capped like a browser (issue 13.4).

Unit tests of ``RunCookies`` on real host names, then step checks over real sockets where
``shop.test`` and ``www.shop.test`` resolve to loopback through a resolver injected into the
test's HTTP client (the Host header and the jar still see the real names).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.cookies import MAX_COOKIE_BYTES, MAX_COOKIES, MAX_HEADER_BYTES, RunCookies
from agent.httpclient import HttpClients, fetch
from classifier import FindingKind
from tests.agent.commerce import kinds, one_check, run_check
from tests.agent.servers import serve

K = FindingKind


def set_cookie(*values: str) -> httpx.Headers:
    return httpx.Headers([("set-cookie", v) for v in values])


def test_domain_cookie_reaches_subdomains_host_only_does_not() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie("sid=abc; Domain=shop.test; Path=/",
                                              "hostonly=1; Path=/"))
    assert jar.header("http://www.shop.test/cart") == "sid=abc"
    assert jar.header("http://shop.test/cart") in ("sid=abc; hostonly=1", "hostonly=1; sid=abc")
    assert jar.header("http://other.test/") is None
    assert jar.header("http://evilshop.test/") is None


def test_a_shop_cannot_set_cookies_for_another_domain() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie("x=1; Domain=other.test", "y=2; Domain=test"))
    assert jar.header("http://other.test/") is None
    assert jar.header("http://www.other.test/") is None


def test_path_scopes_a_cookie() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/checkout/start", set_cookie("step=1; Path=/checkout"))
    assert jar.header("http://shop.test/checkout/payment") == "step=1"
    assert jar.header("http://shop.test/") is None
    assert jar.header("http://shop.test/checkoutx") is None


def test_secure_cookies_never_go_over_http() -> None:
    jar = RunCookies()
    jar.store("https://shop.test/", set_cookie("s=1; Secure; Path=/", "p=2; Path=/"))
    assert jar.header("http://shop.test/") == "p=2"
    assert sorted(jar.header("https://shop.test/").split("; ")) == ["p=2", "s=1"]  # type: ignore[union-attr]


def test_expiry_and_max_age_delete_cookies() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie("a=1; Path=/", "b=2; Path=/"))
    jar.store("http://shop.test/", set_cookie("a=; Max-Age=0; Path=/",
                                              "b=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"))
    assert jar.header("http://shop.test/") is None
    assert jar.get("a") is None and jar.get("b") is None


def test_values_are_sent_back_as_set_quotes_included() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie('q="a b"; Path=/', "t=x=y; Path=/"))
    assert sorted(jar.header("http://shop.test/").split("; ")) == ['q="a b"', "t=x=y"]  # type: ignore[union-attr]
    assert jar.get("q") == '"a b"'


def test_loopback_addresses_keep_host_only_cookies() -> None:
    jar = RunCookies()
    jar.store("http://127.0.0.1:8765/", set_cookie("demo_session=abc; Path=/; HttpOnly"))
    assert jar.header("http://127.0.0.1:8765/cart") == "demo_session=abc"
    assert jar.header("http://localhost:8765/cart") is None


def test_a_cookie_flood_is_capped_like_a_browser() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie(*(f"c{i}=v{i:04d}; Path=/" for i in range(1000))))
    jar.store("http://shop.test/", set_cookie("huge=" + "x" * MAX_COOKIE_BYTES + "; Path=/"))
    header = jar.header("http://shop.test/")
    assert header is not None and len(header) <= MAX_HEADER_BYTES
    assert header.count("=") == MAX_COOKIES
    assert jar.get("huge") is None
    evidence = jar.flood_evidence()
    assert evidence["cookies_offered"] == "1001"
    assert int(evidence["cookies_ignored"]) == 1001 - MAX_COOKIES
    # Cookies already held are updated even at the cap.
    jar.store("http://shop.test/", set_cookie("c0=new; Path=/"))
    assert jar.get("c0") == "new"


def test_a_long_cookie_header_is_cut_to_the_cap() -> None:
    jar = RunCookies()
    jar.store("http://shop.test/", set_cookie(*(f"k{i}={'v' * 3000}; Path=/" for i in range(5))))
    header = jar.header("http://shop.test/")
    assert header is not None and len(header) <= MAX_HEADER_BYTES
    assert header.count("=") == 2
    assert jar.flood_evidence()["cookies_ignored"] == "3"


class ResolvingTransport(httpx.AsyncBaseTransport):
    """Sends each request to loopback for the names in ``hosts`` (the test's resolver); the
    request keeps its URL and Host header, so the server and the jar see the real names."""

    def __init__(self, port: int, hosts: set[str]) -> None:
        self._port = port
        self._hosts = hosts
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in self._hosts:
            raise httpx.ConnectError(f"no such host {request.url.host}", request=request)
        real = request.url
        request.url = real.copy_with(host="127.0.0.1", port=self._port)
        try:
            response = await self._inner.handle_async_request(request)
        finally:
            request.url = real
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class ResolvingClients(HttpClients):
    """The shared client stack, with the test's resolver in place of DNS."""

    def __init__(self, port: int, hosts: set[str]) -> None:
        super().__init__("storewatch-test")
        self._resolving = httpx.AsyncClient(transport=ResolvingTransport(port, hosts),
                                            follow_redirects=False, trust_env=False)

    def get(self, *, verify: bool = True, ca_file: Any = None,
            proxy: str | None = None) -> httpx.AsyncClient:
        return self._resolving

    async def aclose(self) -> None:
        await self._resolving.aclose()
        await super().aclose()


@pytest.fixture
async def shop() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """An apex→www shop: ``shop.test`` logs in with a ``Domain=shop.test`` session and
    redirects to ``www.shop.test``, whose cart needs that session."""
    seen: dict[str, Any] = {}

    async def login(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": f"http://www.{HOST}:"
                                                     f"{request.url.port}/cart"})
        response.headers.add("Set-Cookie", "session=s3cr3t; Domain=shop.test; Path=/")
        response.headers.add("Set-Cookie", 'pref="a b"; Domain=shop.test; Path=/')
        response.headers.add("Set-Cookie", "apexonly=1; Path=/")
        response.headers.add("Set-Cookie", "tls=1; Domain=shop.test; Path=/; Secure")
        response.headers.add("Set-Cookie", "gone=1; Domain=shop.test; Path=/; Max-Age=0")
        return response

    async def cart(request: web.Request) -> web.Response:
        seen["host"] = request.host
        seen["cookie"] = request.headers.get("Cookie")
        if "session=s3cr3t" not in (request.headers.get("Cookie") or ""):
            return web.Response(status=403, text="<p>session expired</p>",
                                content_type="text/html")
        return web.Response(text="<table><tr class='cart-item'></tr></table>",
                            content_type="text/html")

    async with serve({"/login": login, "/cart": cart}) as url:
        yield url, seen


HOST = "shop.test"


async def test_apex_session_reaches_www_checkout(shop: tuple[str, dict[str, Any]]) -> None:
    url, seen = shop
    port = int(url.rsplit(":", 1)[1])
    clients = ResolvingClients(port, {HOST, f"www.{HOST}"})
    try:
        check = {"name": "flow", "type": "checkout", "steps": [
            {"name": "login", "path": "/login",
             "expect": {"selector": ["tr.cart-item"]}}]}
        result = await run_check(clients, one_check(f"http://{HOST}:{port}", check))
    finally:
        await clients.aclose()
    assert result.success, result.findings
    assert seen["host"] == f"www.{HOST}:{port}"
    sent = sorted(seen["cookie"].split("; "))
    assert sent == ['pref="a b"', "session=s3cr3t"]  # no host-only, Secure or expired cookie


async def test_a_cookie_flood_is_evidence_not_our_failure(clients_stack: HttpClients) -> None:
    """The shop sets 1,000 cookies; like nginx, it refuses a Cookie header over 8 KiB with 431.
    Capped like a browser, the agent's next step passes; the flood is measured."""
    async def flood(request: web.Request) -> web.Response:
        response = web.Response(text="<p>welcome</p>", content_type="text/html")
        for i in range(1000):
            response.headers.add("Set-Cookie", f"tracking_{i:04d}=value-{i:04d}; Path=/")
        return response

    async def cart(request: web.Request) -> web.Response:
        if len(request.headers.get("Cookie", "")) > MAX_HEADER_BYTES:
            return web.Response(status=431, text="Request Header Fields Too Large")
        return web.Response(text="<table><tr class='cart-item'></tr></table>",
                            content_type="text/html")

    async with serve({"/": flood, "/cart": cart}) as url:
        check = {"name": "flow", "type": "checkout", "steps": [
            {"name": "home", "path": "/"},
            {"name": "cart", "path": "/cart", "expect": {"selector": ["tr.cart-item"]}}]}
        result = await run_check(clients_stack, one_check(url, check))
    assert result.success, result.findings
    assert result.measurements["cookies_ignored"] == 1000 - MAX_COOKIES


async def test_a_failing_step_after_a_flood_names_the_flood(clients_stack: HttpClients) -> None:
    async def flood(request: web.Request) -> web.Response:
        response = web.Response(text="<p>welcome</p>", content_type="text/html")
        for i in range(400):
            response.headers.add("Set-Cookie", f"t{i}=v; Path=/")
        return response

    async def cart(request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async with serve({"/": flood, "/cart": cart}) as url:
        check = {"name": "flow", "type": "checkout", "steps": [
            {"name": "home", "path": "/"}, {"name": "cart", "path": "/cart"}]}
        result = await run_check(clients_stack, one_check(url, check))
    assert kinds(result) == [K.CHECKOUT_BROKEN]
    finding = result.findings[0]
    assert "the shop set 400 cookies in this run; 220 ignored as a browser would" in \
        finding.summary
    assert finding.evidence.details["cookies_ignored"] == "220"


async def test_fetch_sends_each_hop_its_own_cookies(clients_stack: HttpClients) -> None:
    """Redirect hops store and send cookies by the jar's rules (path-scoped here)."""
    seen: list[str | None] = []

    async def start(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": "/account/home"})
        response.headers.add("Set-Cookie", "acct=1; Path=/account")
        response.headers.add("Set-Cookie", "other=1; Path=/other")
        return response

    async def home(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.Response(text="ok")

    async with serve({"/start": start, "/account/home": home}) as url:
        res = await fetch(clients_stack.get(), url + "/start", timeout=5, max_body_bytes=1000,
                          max_redirects=3, cookies=RunCookies())
    assert not isinstance(res, Exception) and getattr(res, "status", None) == 200
    assert seen == ["acct=1"]


@pytest.fixture
async def clients_stack() -> AsyncIterator[HttpClients]:
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()
