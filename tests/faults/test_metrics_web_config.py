"""/metrics behind TLS and basic auth (``--web.config.file``), with real requests."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge

from agent.errors import ConfigError
from agent.metrics.server import MetricsServer
from agent.metrics.webconfig import load_web_config
from tests.conftest import ROOT, TLSMaterial, storewatch

PASSWORD = "scr4pe-pa55"


def trust(tls: TLSMaterial) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca_cert))


def hashed(password: str = PASSWORD) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def write_web_config(path: Path, tls: TLSMaterial | None, users: dict[str, str]) -> Path:
    doc: dict[str, object] = {}
    if tls is not None:
        doc["tls_server_config"] = {"cert_file": str(tls.leaf_cert), "key_file": str(tls.key)}
    if users:
        doc["basic_auth_users"] = users
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def secured(tls_material: TLSMaterial, tmp_path: Path) -> Iterator[str]:
    """A MetricsServer over TLS with one user, on a free loopback port; yields its URL."""
    registry = CollectorRegistry()
    Gauge("storewatch_test_value", "test", registry=registry).set(7)
    path = write_web_config(tmp_path / "web.yml", tls_material, {"prometheus": hashed()})
    server = MetricsServer("127.0.0.1", 0, registry, lambda: {"status": "ok"},
                           load_web_config(path), str(path))
    server.start()
    try:
        yield f"{server.scheme}://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("auth", "status"),
    [(("prometheus", PASSWORD), 200), (("prometheus", "wrong"), 401), (None, 401),
     (("nobody", PASSWORD), 401), (("prometheus", "x" * 100), 401)],
    ids=["right-password", "wrong-password", "no-credentials", "unknown-user",
         "over-72-bytes"],
)
@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_basic_auth_over_tls(secured: str, tls_material: TLSMaterial,
                             auth: tuple[str, str] | None, status: int, path: str) -> None:
    response = httpx.get(secured + path, auth=auth, verify=trust(tls_material))
    assert response.status_code == status
    if status == 200:
        assert path != "/metrics" or "storewatch_test_value 7.0" in response.text
    else:
        assert response.headers["www-authenticate"] == 'Basic realm="storewatch"'
        assert "storewatch_test_value" not in response.text


def test_plain_http_to_the_tls_port_fails_and_the_server_goes_on(
        secured: str, tls_material: TLSMaterial) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(secured.replace("https://", "http://") + "/metrics", timeout=5)
    response = httpx.get(secured + "/metrics", auth=("prometheus", PASSWORD),
                         verify=trust(tls_material))
    assert response.status_code == 200


def test_the_server_certificate_is_the_configured_one(secured: str,
                                                      tls_material: TLSMaterial) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(secured + "/metrics")  # system CAs do not know the test CA


BAD_WEB_CONFIGS = [
    ("unknown-key", "tls_server_config:\n  cert_file: /a\n  key_file: /b\n  ciphers: x\n",
     "web.yml:4: tls_server_config.ciphers: unknown key 'ciphers'; did you mean "
     "'cipher_suites'?"),
    ("not-bcrypt", "basic_auth_users:\n  prometheus: plain-text\n",
     "web.yml:2: basic_auth_users.prometheus: not a bcrypt hash ($2b$...); make one with: "
     "htpasswd -nBC 12 USER"),
    ("yaml-syntax", "basic_auth_users: [\n",
     "web.yml:2: invalid YAML: while parsing a flow node, did not find expected node content"),
    ("missing-key-file", "tls_server_config:\n  cert_file: /a\n",
     "web.yml:1: tls_server_config: required key 'key_file' is missing"),
    ("cert-not-found", "tls_server_config:\n  cert_file: /nonexistent.crt\n"
     "  key_file: /nonexistent.key\n",
     "web.yml: tls_server_config.cert_file: cannot read /nonexistent.crt: no such file"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_WEB_CONFIGS,
                         ids=[c[0] for c in BAD_WEB_CONFIGS])
def test_bad_web_config_is_one_line_and_exit_2(tmp_path: Path, name: str, text: str,
                                               message: str) -> None:
    (tmp_path / "web.yml").write_text(text)
    config = tmp_path / "c.yaml"
    config.write_text("sites: [{name: s, base_url: 'http://127.0.0.1:9', checks: [{name: h}]}]\n")
    proc = storewatch("run", "-c", str(config), "--listen", "127.0.0.1:0",
                      "--state-dir", str(tmp_path / "state"), "--web.config.file", "web.yml",
                      cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line == f"storewatch: {message}"


def test_mismatched_key_is_one_line(tls_material: TLSMaterial, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True,
                   capture_output=True)
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(
        tls_material.leaf_cert), "key_file": str(other)}}))
    with pytest.raises(ConfigError) as info:
        MetricsServer("127.0.0.1", 0, CollectorRegistry(), dict, load_web_config(path),
                      str(path))
    assert str(info.value).startswith(f"{path}: tls_server_config: cannot use certificate ")
    assert "\n" not in str(info.value)


def test_run_serves_metrics_over_tls_with_basic_auth(tls_material: TLSMaterial,
                                                     tmp_path: Path) -> None:
    web = write_web_config(tmp_path / "web.yml", tls_material, {"prometheus": hashed()})
    config = tmp_path / "c.yaml"
    config.write_text("sites: [{name: s, base_url: 'http://127.0.0.1:9', checks: [{name: h}]}]\n")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config),
                             "--listen", f"127.0.0.1:{port}", "--state-dir",
                             str(tmp_path / "state"), "--web.config.file", str(web)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"https://127.0.0.1:{port}/metrics"
        ok = _poll(lambda: httpx.get(url, auth=("prometheus", PASSWORD),
                                     verify=trust(tls_material)))
        assert ok.status_code == 200 and "storewatch_checks_configured 1.0" in ok.text
        assert httpx.get(url, verify=trust(tls_material)).status_code == 401
        assert httpx.get(url, auth=("prometheus", "nope"),
                         verify=trust(tls_material)).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"metrics at https://127.0.0.1:{port}/metrics" in err
    assert "Traceback" not in err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(get: object, attempts: int = 50) -> httpx.Response:
    for _ in range(attempts):
        try:
            return get()  # type: ignore[operator,no-any-return]
        except httpx.ConnectError:
            time.sleep(0.1)
    raise AssertionError("metrics endpoint never came up")
