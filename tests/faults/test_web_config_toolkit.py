"""The whole exporter-toolkit web config format on /metrics, with real certificates made by
openssl: mutual TLS (every client_auth_type), allowed SANs, TLS versions, cipher suites, curves,
inline PEM, relative paths, response headers and the rate limit."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge

from agent.config.loader import load_config_text
from agent.errors import ConfigError
from agent.metrics.server import MetricsServer
from agent.metrics.webconfig import WebConfig, load_web_config
from tests.conftest import TLSMaterial


@dataclass(frozen=True)
class Clients:
    """Client certificates: one signed by the test CA with SAN prometheus.example, one signed
    by it with another SAN, one self-signed."""

    good: tuple[Path, Path]
    other_san: tuple[Path, Path]
    selfsigned: tuple[Path, Path]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def clients(tls_material: TLSMaterial, tmp_path_factory: pytest.TempPathFactory) -> Clients:
    d = tmp_path_factory.mktemp("client-certs")
    ca_key = tls_material.ca_cert.parent / "ca.key"
    made = {}
    for name, san in (("good", "DNS:prometheus.example"), ("other", "DNS:intruder.example")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(tls_material.ca_cert),
                 "-CAkey", str(ca_key), "-CAcreateserial", "-out", f"{name}.pem", "-days", "5",
                 "-extfile", f"{name}.ext", cwd=d)
        made[name] = (d / f"{name}.pem", d / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out",
             "self.pem", "-days", "5", "-subj", "/CN=self", "-addext",
             "subjectAltName=DNS:prometheus.example", cwd=d)
    return Clients(made["good"], made["other"], (d / "self.pem", d / "self.key"))


Serve = Callable[[dict[str, Any]], str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a MetricsServer with the given web config document; returns its base URL."""
    servers: list[MetricsServer] = []

    def start(doc: dict[str, Any]) -> str:
        path = tmp_path / f"web{len(servers)}.yml"
        path.write_text(yaml.safe_dump(doc))
        registry = CollectorRegistry()
        Gauge("storewatch_test_value", "test", registry=registry).set(7)
        server = MetricsServer("127.0.0.1", 0, registry, lambda: {"status": "ok"},
                               load_web_config(path), str(path))
        server.start()
        servers.append(server)
        return f"{server.scheme}://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def tls_server(tls: TLSMaterial, **extra: Any) -> dict[str, Any]:
    return {"tls_server_config": {"cert_file": str(tls.leaf_cert),
                                  "key_file": str(tls.leaf_key), **extra}}


def client_context(tls: TLSMaterial, cert: tuple[Path, Path] | None = None, *,
                   max_version: ssl.TLSVersion | None = None,
                   ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def scrape(url: str, ctx: ssl.SSLContext) -> httpx.Response:
    return httpx.get(url + "/metrics", verify=ctx, timeout=10)


def handshake(url: str, ctx: ssl.SSLContext) -> tuple[str, str, bytes]:
    """TLS version, cipher and the first response bytes of a raw GET /metrics."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = sock.recv(64)
        version, cipher = sock.version() or "", (sock.cipher() or ("",))[0]
    return version, cipher, reply


def refused(url: str, ctx: ssl.SSLContext) -> bool:
    """Whether the server ends the exchange without an HTTP answer (TLS alert or close)."""
    try:
        response = scrape(url, ctx)
    except (httpx.HTTPError, ssl.SSLError, OSError):
        return True
    return response.status_code != 200


def test_a_node_exporter_web_config_with_every_key_is_accepted(
        tls_material: TLSMaterial, serve: Serve, clients: Clients) -> None:
    doc = tls_server(tls_material, client_auth_type="RequireAndVerifyClientCert",
                     client_ca_file=str(tls_material.ca_cert),
                     client_allowed_sans=["prometheus.example"], min_version="TLS12",
                     max_version="TLS13", cipher_suites=["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                                         "TLS_AES_128_GCM_SHA256"],
                     prefer_server_cipher_suites=True, curve_preferences=["X25519", "CurveP256"])
    doc["http_server_config"] = {"http2": True, "headers": {
        "Strict-Transport-Security": "max-age=31536000", "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "deny", "X-XSS-Protection": "1; mode=block",
        "Content-Security-Policy": "default-src 'none'"}}
    doc["rate_limit"] = {"interval": "10ms", "burst": 100}
    url = serve(doc)
    response = scrape(url, client_context(tls_material, clients.good))
    assert response.status_code == 200 and "storewatch_test_value 7.0" in response.text
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers["x-frame-options"] == "deny"
    assert response.headers["content-security-policy"] == "default-src 'none'"


@pytest.mark.parametrize(
    ("auth_type", "no_cert", "selfsigned", "good"),
    [("RequireAndVerifyClientCert", False, False, True),
     ("VerifyClientCertIfGiven", True, False, True),
     ("RequireAnyClientCert", False, False, True),   # verified too: Python cannot skip it
     ("RequestClientCert", True, False, True)],
)
def test_client_auth_types(tls_material: TLSMaterial, serve: Serve, clients: Clients,
                           auth_type: str, no_cert: bool, selfsigned: bool, good: bool) -> None:
    url = serve(tls_server(tls_material, client_auth_type=auth_type,
                           client_ca_file=str(tls_material.ca_cert)))
    assert (not refused(url, client_context(tls_material))) is no_cert
    assert (not refused(url, client_context(tls_material, clients.selfsigned))) is selfsigned
    assert (not refused(url, client_context(tls_material, clients.good))) is good


def test_no_client_cert_ignores_client_certificates(tls_material: TLSMaterial,
                                                    serve: Serve, clients: Clients) -> None:
    url = serve(tls_server(tls_material))
    assert not refused(url, client_context(tls_material))
    assert not refused(url, client_context(tls_material, clients.selfsigned))


def test_client_allowed_sans(tls_material: TLSMaterial, serve: Serve, clients: Clients) -> None:
    url = serve(tls_server(tls_material, client_auth_type="RequireAndVerifyClientCert",
                           client_ca_file=str(tls_material.ca_cert),
                           client_allowed_sans=["prometheus.example"]))
    assert not refused(url, client_context(tls_material, clients.good))
    assert refused(url, client_context(tls_material, clients.other_san))


def test_min_and_max_version(tls_material: TLSMaterial, serve: Serve) -> None:
    only13 = serve(tls_server(tls_material, min_version="TLS13"))
    assert refused(only13, client_context(tls_material, max_version=ssl.TLSVersion.TLSv1_2))
    assert handshake(only13, client_context(tls_material))[0] == "TLSv1.3"
    only12 = serve(tls_server(tls_material, max_version="TLS12"))
    version, _, reply = handshake(only12, client_context(tls_material))
    assert version == "TLSv1.2" and reply.startswith(b"HTTP/1.1 200")


def test_cipher_suites_and_server_preference(tls_material: TLSMaterial, serve: Serve) -> None:
    url = serve(tls_server(tls_material, max_version="TLS12", cipher_suites=[
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]))
    client = client_context(tls_material, ciphers="ECDHE-RSA-AES128-GCM-SHA256:"
                            "ECDHE-RSA-AES256-GCM-SHA384")
    assert handshake(url, client)[1] == "ECDHE-RSA-AES256-GCM-SHA384"  # the server's order
    assert refused(url, client_context(tls_material, ciphers="ECDHE-RSA-CHACHA20-POLY1305"))
    no_preference = serve(tls_server(tls_material, max_version="TLS12",
                                     prefer_server_cipher_suites=False, cipher_suites=[
                                         "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                                         "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]))
    assert handshake(no_preference, client)[1] == "ECDHE-RSA-AES128-GCM-SHA256"


def test_curve_preferences(tls_material: TLSMaterial, serve: Serve) -> None:
    url = serve(tls_server(tls_material, max_version="TLS12", curve_preferences=["CurveP384"]))
    p256 = client_context(tls_material, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    p256.set_ecdh_curve("prime256v1")
    assert refused(url, p256)
    p384 = client_context(tls_material, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    p384.set_ecdh_curve("secp384r1")
    assert handshake(url, p384)[2].startswith(b"HTTP/1.1 200")


def test_inline_pem_and_relative_paths(tls_material: TLSMaterial, serve: Serve,
                                       clients: Clients, tmp_path: Path) -> None:
    inline = serve({"tls_server_config": {
        "cert": tls_material.leaf_cert.read_text(), "key": tls_material.leaf_key.read_text(),
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca": tls_material.ca_cert.read_text()}})
    assert not refused(inline, client_context(tls_material, clients.good))
    assert refused(inline, client_context(tls_material))
    (tmp_path / "certs").mkdir()
    for source, name in ((tls_material.leaf_cert, "server.pem"),
                         (tls_material.leaf_key, "server.key")):
        (tmp_path / "certs" / name).write_bytes(source.read_bytes())
    relative = serve({"tls_server_config": {"cert_file": "certs/server.pem",
                                            "key_file": "certs/server.key"}})
    assert not refused(relative, client_context(tls_material))


def test_rate_limit_answers_429_beyond_the_burst(serve: Serve) -> None:
    url = serve({"rate_limit": {"interval": "1h", "burst": 2}})
    statuses = [httpx.get(url + "/metrics", timeout=10).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]


BAD = [
    ("auth-without-ca", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                               "client_auth_type": "RequireAndVerifyClientCert"}},
     "web.yml:3: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs "
     "client_ca_file (client certificates are verified against it)"),
    ("ca-without-auth", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                               "client_ca_file": "/c"}},
     "web.yml:3: tls_server_config.client_ca_file: a client CA is configured but "
     "client_auth_type is NoClientCert; use RequireAndVerifyClientCert"),
    ("bad-auth-type", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                             "client_auth_type": "Sometimes"}},
     "web.yml:3: tls_server_config.client_auth_type: Input should be 'NoClientCert', "
     "'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven' or "
     "'RequireAndVerifyClientCert'"),
    ("bad-version", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                           "min_version": "SSL3"}},
     "web.yml:4: tls_server_config.min_version: unknown TLS version 'SSL3'; use one of "
     "TLS10, TLS11, TLS12, TLS13"),
    ("min-above-max", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                             "min_version": "TLS13", "max_version": "TLS12"}},
     "web.yml:5: tls_server_config.min_version: min_version TLS13 is above max_version TLS12"),
    ("insecure-cipher", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                               "cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}},
     "web.yml:4: tls_server_config.cipher_suites[0]: unknown or insecure cipher suite "
     "'TLS_RSA_WITH_RC4_128_SHA'; use Go names of tls.CipherSuites(), e.g. "
     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("bad-curve", {"tls_server_config": {"cert_file": "/a", "key_file": "/b",
                                         "curve_preferences": ["P-256"]}},
     "web.yml:4: tls_server_config.curve_preferences[0]: unknown curve 'P-256'; use one of "
     "CurveP256, CurveP384, CurveP521, X25519"),
    ("header-not-allowed", {"http_server_config": {"headers": {"Server": "x"}}},
     "web.yml:3: http_server_config.headers.Server: HTTP header 'Server' can not be "
     "configured; use Strict-Transport-Security, Content-Security-Policy, X-XSS-Protection, "
     "X-Frame-Options, X-Content-Type-Options"),
    ("header-bad-value", {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     "web.yml:3: http_server_config.headers.X-Frame-Options: invalid value 'allow'; use deny "
     "or sameorigin"),
    ("cert-and-cert-file", {"tls_server_config": {"cert_file": "/a", "cert": "PEM",
                                                  "key_file": "/b"}},
     "web.yml:2: tls_server_config.cert: give either cert or cert_file, not both"),
]


@pytest.mark.parametrize(("name", "doc", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_toolkit_settings_are_one_line(name: str, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(yaml.safe_dump(doc), WebConfig, filename="web.yml")
    assert str(info.value) == message
