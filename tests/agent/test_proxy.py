"""Probes and tracker requests through an HTTP proxy on loopback: HTTPS_PROXY/HTTP_PROXY/
NO_PROXY, a site's ``proxy:``, CONNECT to an https target with a real certificate, credentials
only to the proxy and never in text."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.config.loader import load_config_text
from agent.config.schema import Config
from agent.config.secrets import clear_secrets, registered_secrets, scrub
from agent.errors import ConfigError
from agent.httpclient import FetchError, FetchResult, HttpClients, fetch
from agent.proxy import ProxyRules
from agent.sinks.transport import TrackerClient
from tests.agent.commerce import one_check, run_check
from tests.agent.proxy_server import loopback_proxy
from tests.agent.servers import Handler, free_port, serve
from tests.conftest import TLSMaterial

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
USER, PASSWORD = "agency", "s3cret-proxy-pass"


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield
    clear_secrets()


def tls_server(tls_material: TLSMaterial) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_material.leaf_cert), str(tls_material.key))
    return ctx


def recording(seen: list[dict[str, str]]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return web.Response(text="through")
    return handler


async def test_https_target_through_connect_with_credentials_from_env(
        tls_material: TLSMaterial) -> None:
    origin: list[dict[str, str]] = []
    async with loopback_proxy((USER, PASSWORD)) as proxy, \
            serve({"/": recording(origin)}, tls_server(tls_material)) as url:
        clients = HttpClients("storewatch-test",
                              env={"HTTPS_PROXY": proxy.url(f"{USER}:{PASSWORD}")})
        try:
            result = await fetch(clients.get(ca_file=tls_material.ca_cert), url + "/",
                                 timeout=5, max_body_bytes=100, max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchResult), result
    assert result.body == b"through"
    assert result.cert_not_after is not None  # the origin's certificate, verified end to end
    port = url.rsplit(":", 1)[1]
    assert [s.line for s in proxy.seen] == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]
    assert proxy.seen[0].headers["proxy-authorization"].startswith("Basic ")
    assert not any(k.lower() == "proxy-authorization" for k in origin[0])
    assert PASSWORD in registered_secrets() and PASSWORD not in scrub(f"x {PASSWORD} y")


async def test_http_target_is_forwarded_in_absolute_form() -> None:
    origin: list[dict[str, str]] = []
    async with loopback_proxy((USER, PASSWORD)) as proxy, \
            serve({"/page": recording(origin)}) as url:
        clients = HttpClients("storewatch-test",
                              env={"http_proxy": proxy.url(f"{USER}:{PASSWORD}")})
        try:
            result = await fetch(clients.get(), url + "/page?q=1", timeout=5,
                                 max_body_bytes=100, max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchResult), result
    assert [s.line for s in proxy.seen] == [f"GET {url}/page?q=1 HTTP/1.1"]
    assert origin[0]["Host"] == url.removeprefix("http://")
    assert not any(k.lower() == "proxy-authorization" for k in origin[0])


async def test_no_proxy_goes_direct() -> None:
    async with loopback_proxy() as proxy, serve({"/": recording([])}) as url:
        clients = HttpClients("storewatch-test", env={"HTTP_PROXY": proxy.url(),
                                                      "NO_PROXY": "localhost,127.0.0.0/8"})
        try:
            result = await fetch(clients.get(), url + "/", timeout=5, max_body_bytes=100,
                                 max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchResult), result
    assert proxy.seen == []


async def test_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    async with loopback_proxy() as proxy, serve({"/": recording([])}) as url:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        clients = HttpClients("storewatch-test")
        try:
            result = await fetch(clients.get(), url + "/", timeout=5, max_body_bytes=100,
                                 max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchResult), result
    assert len(proxy.seen) == 1


async def test_site_proxy_key_wins_over_the_environment(tls_material: TLSMaterial) -> None:
    async with loopback_proxy((USER, PASSWORD)) as site_proxy, loopback_proxy() as env_proxy, \
            serve({"/": recording([])}, tls_server(tls_material)) as url:
        cfg = Config.model_validate({"sites": [{
            "name": "shop", "base_url": url, "proxy": site_proxy.url(f"{USER}:{PASSWORD}"),
            "tls": {"ca_file": str(tls_material.ca_cert)},
            "checks": [{"name": "home", "path": "/"}]}]})
        clients = HttpClients("storewatch-test", env={"HTTPS_PROXY": env_proxy.url()})
        try:
            result = await run_check(clients, cfg)
        finally:
            await clients.aclose()
    assert result.success, result.findings
    assert len(site_proxy.seen) == 1 and site_proxy.seen[0].line.startswith("CONNECT ")
    assert env_proxy.seen == []


async def test_proxy_refusing_is_a_connect_failure_without_the_password(
        tls_material: TLSMaterial) -> None:
    async with loopback_proxy((USER, "another-password")) as proxy, \
            serve({"/": recording([])}, tls_server(tls_material)) as url:
        clients = HttpClients("storewatch-test",
                              env={"HTTPS_PROXY": proxy.url(f"{USER}:{PASSWORD}")})
        try:
            result = await fetch(clients.get(ca_file=tls_material.ca_cert), url + "/",
                                 timeout=5, max_body_bytes=100, max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(result, FetchError)
    assert result.failure.value == "connect"
    assert f"proxy 127.0.0.1:{proxy.port} refused CONNECT" in result.message
    assert "407" in result.message and PASSWORD not in result.message


def test_bad_proxy_environment_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        HttpClients("storewatch-test", env={"HTTPS_PROXY": "socks5://127.0.0.1:1080"})
    assert str(caught.value).startswith("environment variable HTTPS_PROXY: proxy scheme")


def test_site_proxy_is_validated_with_its_line_and_its_password_is_a_secret() -> None:
    text = ("sites:\n"
            "  - name: shop\n"
            "    base_url: https://shop.example\n"
            "    proxy: ftp://u:${PROXY_PASSWORD}@proxy.internal:3128\n"
            "    checks: [{name: home}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, Config, filename="cfg.yaml", env={"PROXY_PASSWORD": "pw-1234"})
    assert str(caught.value).startswith("cfg.yaml:4: "), caught.value
    assert "pw-1234" not in str(caught.value)
    ok = load_config_text(text.replace("ftp://", "http://"), Config, filename="cfg.yaml",
                          env={"PROXY_PASSWORD": "pw-1234"})
    assert ok.sites[0].proxy is not None
    assert "pw-1234" in registered_secrets()


async def test_tracker_requests_honour_the_environment_proxy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.incidents.service import IncidentService

    async def created(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": 1}, status=201)

    async with loopback_proxy((USER, PASSWORD)) as proxy, \
            serve({"/api/issues": created}) as url:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(f"{USER}:{PASSWORD}"))
        config = one_check("https://shop.example", {"name": "home"})
        config = config.model_copy(update={"agent": config.agent.model_copy(
            update={"state_dir": tmp_path})})
        clients = HttpClients("storewatch-test")
        service = IncidentService(config, clients)
        tracker = TrackerClient(service._sink_http(), url, sink="tracker", timeout=5)
        try:
            answer = await tracker.request("POST", "/api/issues", action="create issue",
                                           json={"title": "x"})
        finally:
            await service.stop()
            await clients.aclose()
    assert answer.status_code == 201
    assert [s.line for s in proxy.seen] == [f"POST {url}/api/issues HTTP/1.1"]


@pytest.mark.parametrize(("entries", "host", "port", "bypass"), [
    ("*", "shop.example", 443, True),
    ("shop.example", "shop.example", 443, True),
    ("shop.example", "www.shop.example", 443, True),
    (".shop.example", "www.shop.example", 443, True),
    ("shop.example", "myshop.example", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 80, True),
    ("10.0.0.0/8", "11.1.2.3", 80, False),
    ("::1", "::1", 80, True),
    ("shop.example:8443", "shop.example", 443, False),
    ("shop.example:8443", "shop.example", 8443, True),
    ("[::1]:8080", "::1", 8080, True),
])
def test_no_proxy_matching(entries: str, host: str, port: int, bypass: bool) -> None:
    rules = ProxyRules.from_env({"HTTPS_PROXY": "http://127.0.0.1:3128", "NO_PROXY": entries})
    assert (rules.for_target("https", host, port) is None) == bypass


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Debian's tinyproxy on 127.0.0.1:<free port> with Basic auth (.ci/run installs it);
    yields its port and log file, stopped by PID."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "tinyproxy.log"
    conf = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1",
            f"BasicAuth {USER} {PASSWORD}", "LogLevel Connect", "MaxClients 20"]
    if os.geteuid() == 0:  # it drops privileges; the log is our open file, not its path
        conf += ["User nobody", "Group nogroup"]
    (tmp_path / "tinyproxy.conf").write_text("\n".join(conf) + "\n")
    with log.open("wb") as log_file:  # in the foreground it logs to stdout
        process = subprocess.Popen([binary, "-d", "-c", str(tmp_path / "tinyproxy.conf")],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):  # until it accepts connections (or dies)
            if process.poll() is not None:
                pytest.fail(f"tinyproxy exited: {log.read_text()[-300:]}")
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("tinyproxy did not start listening")
        yield port, log
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_through_debian_tinyproxy(tinyproxy: tuple[int, Path],
                                        tls_material: TLSMaterial) -> None:
    port, log = tinyproxy
    origin: list[dict[str, str]] = []
    proxy_url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"
    async with serve({"/": recording(origin)}, tls_server(tls_material)) as https_url, \
            serve({"/": recording(origin)}) as http_url:
        clients = HttpClients("storewatch-test",
                              env={"HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url})
        try:
            secure = await fetch(clients.get(ca_file=tls_material.ca_cert), https_url + "/",
                                 timeout=10, max_body_bytes=100, max_redirects=0)
            plain = await fetch(clients.get(), http_url + "/", timeout=10, max_body_bytes=100,
                                max_redirects=0)
        finally:
            await clients.aclose()
    assert isinstance(secure, FetchResult), secure
    assert isinstance(plain, FetchResult), plain
    assert secure.body == plain.body == b"through"
    assert secure.cert_not_after is not None
    text = log.read_text()
    assert f"CONNECT {https_url.removeprefix('https://')} HTTP/1.1" in text, text[-500:]
    assert f"GET {http_url}/ HTTP/1.1" in text, text[-500:]
    assert not any(k.lower() == "proxy-authorization" for h in origin for k in h)


async def test_unreachable_proxy_is_a_connect_failure_naming_it() -> None:
    port = await free_port()
    clients = HttpClients("storewatch-test", env={"HTTP_PROXY": f"http://127.0.0.1:{port}"})
    try:
        result = await fetch(clients.get(), "http://127.0.0.1:9/", timeout=5,
                             max_body_bytes=100, max_redirects=0)
    finally:
        await clients.aclose()
    assert isinstance(result, FetchError)
    assert result.failure.value == "connect"
    assert f"proxy 127.0.0.1:{port}" in result.message
