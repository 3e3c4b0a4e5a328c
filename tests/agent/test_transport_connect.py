"""How the lean transport connects: Happy Eyeballs over a silently dropping IPv6 address, IDNA
A-labels for DNS/SNI/Host, and header injection refused — over real loopback sockets (and a
network namespace of the test's own when it runs as root)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent.config.loader import load_config_text
from agent.config.schema import Config
from agent.errors import ConfigError
from agent.httpclient import FetchError, FetchResult, HttpClients, fetch
from agent.transport import AddrInfo, LeanTransport, Resolver, _interleaved
from tests.agent.commerce import one_check, run_check
from tests.agent.servers import serve
from tests.conftest import TLSMaterial

ROOT = Path(__file__).resolve().parents[2]
V4, V6 = socket.AF_INET, socket.AF_INET6


def _info(family: int, host: str, port: int) -> AddrInfo:
    address = (host, port) if family == V4 else (host, port, 0, 0)
    return family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address


class FakeDNS:
    """A resolver that answers from a table and remembers every name it was asked."""

    def __init__(self, table: dict[str, list[tuple[int, str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[AddrInfo]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_info(family, address, port) for family, address in self.table[host]]


@asynccontextmanager
async def stack(resolver: Resolver) -> AsyncIterator[HttpClients]:
    clients = HttpClients("storewatch-test", env={},
                          transport=lambda ctx, rules: LeanTransport(ctx, rules,
                                                                     resolver=resolver))
    try:
        yield clients
    finally:
        await clients.aclose()


@contextmanager
def blackholed_v6(port: int) -> Iterator[None]:
    """``[::1]:port`` silently drops SYNs: a listener whose accept queue is full (Linux drops
    a SYN instead of refusing it then)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    listener = socket.socket(V6, socket.SOCK_STREAM)
    held: list[socket.socket] = []
    try:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            listener.bind(("::1", port))
        except OSError as exc:
            pytest.skip(f"cannot bind [::1]:{port}: {exc}")
        listener.listen(0)
        for _ in range(16):  # fill the queue until a connect hangs
            probe = socket.socket(V6, socket.SOCK_STREAM)
            probe.setblocking(False)
            if probe.connect_ex(("::1", port)) not in (0, errno.EINPROGRESS):
                probe.close()
                pytest.skip("[::1] refuses instead of queueing")
            _, writable, _ = select.select([], [probe], [], 0.5)
            if not writable:
                probe.close()
                break
            held.append(probe)
        else:
            pytest.skip("this kernel never drops SYNs for a full accept queue")
        yield
    finally:
        for sock in held:
            sock.close()
        listener.close()


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"hello via {request.transport.get_extra_info('peername')[0]}"
                        if request.transport else "hello")


def test_addresses_are_interleaved_by_family_in_resolver_order() -> None:
    infos = [_info(V6, "::1", 1), _info(V6, "::2", 1), _info(V6, "::3", 1),
             _info(V4, "127.0.0.1", 1), _info(V4, "127.0.0.2", 1)]
    assert [i[4][0] for i in _interleaved(infos)] == ["::1", "127.0.0.1", "::2", "127.0.0.2",
                                                      "::3"]


async def test_ipv6_that_drops_syns_falls_back_to_ipv4() -> None:
    async with serve({"/": ok}) as url:
        port = int(url.rsplit(":", 1)[1])
        dns = FakeDNS({"shop.test": [(V6, "::1"), (V4, "127.0.0.1")]})
        with blackholed_v6(port):
            async with stack(dns) as clients:
                result = await fetch(clients.get(), f"http://shop.test:{port}/", timeout=5,
                                     max_body_bytes=1000, max_redirects=0)
    assert isinstance(result, FetchResult), result
    assert (result.status, result.body) == (200, b"hello via 127.0.0.1")
    assert dns.asked == ["shop.test"]


async def test_refused_address_moves_on_at_once() -> None:
    async with serve({"/": ok}) as url:
        port = int(url.rsplit(":", 1)[1])
        # 127.0.0.2 listens nowhere: refused, so the next address starts without waiting
        dns = FakeDNS({"shop.test": [(V4, "127.0.0.2"), (V4, "127.0.0.1")]})
        async with stack(dns) as clients:
            result = await fetch(clients.get(), f"http://shop.test:{port}/", timeout=5,
                                 max_body_bytes=1000, max_redirects=0)
    assert isinstance(result, FetchResult), result
    assert result.body == b"hello via 127.0.0.1"


async def test_every_address_blackholed_is_a_connect_timeout() -> None:
    async with serve({"/": ok}) as url:
        port = int(url.rsplit(":", 1)[1])
        dns = FakeDNS({"shop.test": [(V6, "::1"), (V6, "::1")]})
        with blackholed_v6(port):
            async with stack(dns) as clients:
                with pytest.raises(httpx.ConnectTimeout):
                    await clients.get().get(f"http://shop.test:{port}/", timeout=0.6)


async def test_dns_failure_is_still_a_dns_failure() -> None:
    async with stack(FakeDNS({})) as clients:
        result = await fetch(clients.get(), "http://nowhere.test/", timeout=2,
                             max_body_bytes=10, max_redirects=0)
    assert isinstance(result, FetchError)
    assert result.failure.value == "dns"


_NETNS_CHILD = r"""
import asyncio, json, socket, sys
from aiohttp import web
from agent.httpclient import FetchResult, HttpClients, fetch

async def main() -> None:
    async def ok(request):
        return web.Response(text="ipv4 answered")
    runner = web.AppRunner(web.Application())
    runner.app.router.add_get("/", ok)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 8080)
    await site.start()
    order = [i[0].name for i in socket.getaddrinfo("shop.test", 8080, type=socket.SOCK_STREAM)]
    clients = HttpClients("storewatch-netns", env={})
    result = await fetch(clients.get(), "http://shop.test:8080/", timeout=4,
                         max_body_bytes=100, max_redirects=0)
    await clients.aclose()
    await runner.cleanup()
    out = {"order": order}
    if isinstance(result, FetchResult):
        out.update(status=result.status, body=result.body.decode())
    else:
        out.update(failure=result.failure.value, message=result.message)
    print(json.dumps(out))

asyncio.run(main())
"""

_NETNS_SETUP = r"""
set -e
ip link set lo up
ip link add sw-v0 type veth peer name sw-v1
ip link set sw-v0 up
ip link set sw-v1 up
ip -6 addr add fd16:b::1/64 dev sw-v0 nodad
# fd16:b::2 answers nothing: its frames go to a MAC nobody has, so every SYN is dropped
ip -6 neigh add fd16:b::2 lladdr 02:00:00:00:16:0b dev sw-v0 nud permanent
printf 'fd16:b::2 shop.test\n127.0.0.1 shop.test\n' > "$HOSTS"
mount --bind "$HOSTS" /etc/hosts
exec "$PYTHON" -c "$CHILD"
"""


@pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux-only")
def test_silent_ipv6_in_a_network_namespace_is_not_site_down(tmp_path: Path) -> None:
    """The production path end to end (OS resolver via /etc/hosts, no injection) in a network
    and mount namespace the test creates and that vanishes with its process."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (unshare --net)")
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (util-linux / iproute2)")
    probe = subprocess.run(["unshare", "--net", "--mount", "ip", "link", "add", "sw-t0", "type",
                            "veth", "peer", "name", "sw-t1"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace with veth here: {probe.stderr.strip()}")
    env = {**os.environ, "HOSTS": str(tmp_path / "hosts"), "PYTHON": sys.executable,
           "CHILD": _NETNS_CHILD, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", "--net", "--mount", "bash", "-c", _NETNS_SETUP],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["order"][0] == "AF_INET6", out  # the dropping address is tried first
    assert out.get("status") == 200 and out.get("body") == "ipv4 answered", out


@pytest.fixture(scope="module")
def idna_cert(tls_material: TLSMaterial, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaf for ``xn--fa-hia.de`` (``faß.de`` in IDNA 2008) signed by the test CA."""
    d = tmp_path_factory.mktemp("idna")
    ca = tls_material.ca_cert
    (d / "san.ext").write_text("subjectAltName=DNS:xn--fa-hia.de\n")
    for args in (["req", "-new", "-key", str(tls_material.key), "-out", "idna.csr", "-subj",
                  "/CN=xn--fa-hia.de"],
                 ["x509", "-req", "-in", "idna.csr", "-CA", str(ca), "-CAkey",
                  str(ca.parent / "ca.key"), "-CAcreateserial", "-out", "idna.pem", "-days", "5",
                  "-extfile", "san.ext"]):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    return d / "idna.pem"


async def test_idna_host_uses_the_a_label_for_dns_sni_and_host(
        tls_material: TLSMaterial, idna_cert: Path) -> None:
    seen: dict[str, str | None] = {}
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(idna_cert), str(tls_material.key))

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen["sni"] = name

    server_ctx.sni_callback = sni  # type: ignore[assignment]

    async def host(request: web.Request) -> web.StreamResponse:
        seen["host"] = request.headers.get("Host")
        return web.Response(text="willkommen")

    async with serve({"/": host}, server_ctx) as url:
        port = int(url.rsplit(":", 1)[1])
        dns = FakeDNS({"xn--fa-hia.de": [(V4, "127.0.0.1")]})
        clients = HttpClients("storewatch-test", env={},
                              transport=lambda ctx, rules: LeanTransport(ctx, rules,
                                                                         resolver=dns))
        try:
            result = await fetch(clients.get(ca_file=tls_material.ca_cert),
                                 f"https://faß.de:{port}/", timeout=3, max_body_bytes=100,
                                 max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchResult), result
    assert result.body == b"willkommen"
    assert dns.asked == ["xn--fa-hia.de"]  # not IDNA 2003's fass.de
    assert seen == {"sni": "xn--fa-hia.de", "host": f"xn--fa-hia.de:{port}"}


async def _recording_server() -> tuple[asyncio.Server, str, list[bytes]]:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", received


@pytest.mark.parametrize("headers", [
    {"X-Token": "abc\r\nX-Injected: yes"},
    {"X-Token": "abc\nX-Injected: yes"},
    {"X-Token": "abc\0"},
    {"X-Token\r\nX-Injected": "yes"},
], ids=["crlf-value", "lf-value", "nul-value", "crlf-name"])
async def test_header_injection_is_refused_before_sending(headers: dict[str, str]) -> None:
    server, url, received = await _recording_server()
    clients = HttpClients("storewatch-test", env={})
    try:
        async with server:
            result = await fetch(clients.get(), url, headers=headers, timeout=2,
                                 max_body_bytes=100, max_redirects=0)
            clean = await fetch(clients.get(), url, headers={"X-Token": "abc"}, timeout=2,
                                max_body_bytes=100, max_redirects=0)
    finally:
        await clients.aclose()
    assert isinstance(result, FetchError)
    assert "header injection" in result.message
    assert isinstance(clean, FetchResult)
    assert len(received) == 1 and b"X-Injected" not in received[0]


async def test_shop_supplied_header_value_with_crlf_is_a_finding_naming_the_step() -> None:
    received: list[str | None] = []

    async def token(request: web.Request) -> web.StreamResponse:
        return web.json_response({"token": "abc\r\nX-Injected: yes"})

    async def use(request: web.Request) -> web.StreamResponse:
        received.append(request.headers.get("X-Injected"))
        return web.Response(text="ok")

    async with serve({"/token": token, "/use": use}) as url:
        cfg = one_check(url, {"name": "flow", "type": "checkout", "steps": [
            {"name": "get-token", "path": "/token", "extract": {"token": {"json": "$.token"}}},
            {"name": "use-token", "path": "/use", "headers": {"X-Token": "{{ token }}"}},
        ]})
        clients = HttpClients("storewatch-test", env={})
        try:
            result = await run_check(clients, cfg)
        finally:
            await clients.aclose()
    assert received == []
    assert len(result.findings) == 1
    summary = result.findings[0].summary
    assert summary.startswith("step 'use-token': header 'X-Token'") and "injection" in summary


@pytest.mark.parametrize(("headers_yaml", "problem"), [
    ('{X-Token: "abc\\r\\nX-Injected: yes"}', "line break"),
    ('{"X Token": "abc"}', "not a valid HTTP header name"),
])
def test_configured_header_injection_is_a_config_error_with_its_line(
        headers_yaml: str, problem: str) -> None:
    text = ("sites:\n"
            "  - name: shop\n"
            "    base_url: https://shop.example\n"
            "    checks:\n"
            "      - name: home\n"
            f"        headers: {headers_yaml}\n")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, Config, filename="cfg.yaml", env={})
    message = str(caught.value)
    assert message.startswith("cfg.yaml:6: ") and problem in message, message


async def test_shop_supplied_path_with_crlf_is_a_finding_not_a_crash() -> None:
    async def token(request: web.Request) -> web.StreamResponse:
        return web.json_response({"next": "x\r\nX-Injected: yes"})

    async with serve({"/token": token}) as url:
        cfg = one_check(url, {"name": "flow", "type": "checkout", "steps": [
            {"name": "get-next", "path": "/token", "extract": {"next": {"json": "$.next"}}},
            {"name": "follow", "path": "/{{ next }}"},
        ]})
        clients = HttpClients("storewatch-test", env={})
        try:
            result = await run_check(clients, cfg)
        finally:
            await clients.aclose()
    assert [f.summary.split(":")[0] for f in result.findings] == ["step 'follow'"]
    assert "invalid URL" in result.findings[0].summary
