"""The agent serves browser evidence (``GET /evidence/<site>/<file>``) from its state directory's
evidence folder only, behind the /metrics TLS and basic auth, over real sockets; ``storewatch
incidents show`` prints the files with their paths and URLs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from agent.evidence import MAX_SERVED_BYTES
from agent.metrics.server import MetricsServer
from agent.metrics.webconfig import load_web_config
from agent.sinks.base import SinkBuildContext
from agent.state.store import Store, db_path
from classifier import Evidence, FindingKind, Level
from tests.agent.sinks import fakes
from tests.agent.sinks.harness import build_sink, config
from tests.agent.sinks.incidents import make_incident
from tests.conftest import TLSMaterial, storewatch

PNG = b"\x89PNG\r\n\x1a\n" + b"\x02" * 128
PASSWORD = "ev1dence-pa55"


@dataclasses.dataclass
class Agent:
    """A running server and its state directory."""

    url: str
    port: int
    state: Path
    shot: Path


def _state(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "state"
    folder = state / "evidence" / "acme-shop"
    folder.mkdir(parents=True)
    shot = folder / "checkout-20260301T100000-pay.png"
    shot.write_bytes(PNG)
    (folder / "checkout-20260301T100000-pay.json").write_text('{"console": []}')
    (folder / "notes.txt").write_text("plain text\n")
    (state / "storewatch.db").write_bytes(b"SQLite format 3\x00secret rows")
    (state / "secret.png").write_bytes(PNG)  # in the state dir, outside the evidence folder
    return state, shot


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Agent]:
    """The server without a web config, on a free loopback port."""
    state, shot = _state(tmp_path)
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: {"status": "ok"},
                           evidence_root=state / "evidence")
    server.start()
    try:
        yield Agent(f"http://127.0.0.1:{server.port}", server.port, state, shot)
    finally:
        server.stop()


@pytest.fixture
def secured(tmp_path: Path, tls_material: TLSMaterial) -> Iterator[Agent]:
    """The server over TLS with basic auth (the /metrics web config)."""
    state, shot = _state(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(tls_material.leaf_cert),
                              "key_file": str(tls_material.key)},
        "basic_auth_users": {"ops": bcrypt.hashpw(PASSWORD.encode(),
                                                  bcrypt.gensalt(rounds=4)).decode()}}))
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: {"status": "ok"},
                           load_web_config(web), str(web), evidence_root=state / "evidence")
    server.start()
    try:
        yield Agent(f"https://127.0.0.1:{server.port}", server.port, state, shot)
    finally:
        server.stop()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """``GET target`` sent byte for byte (clients normalise ``..`` away; attackers do not)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_serves_screenshot_log_and_text_with_their_types(plain: Agent) -> None:
    for name, kind in (("checkout-20260301T100000-pay.png", "image/png"),
                       ("checkout-20260301T100000-pay.json", "application/json"),
                       ("notes.txt", "text/plain; charset=utf-8")):
        response = httpx.get(f"{plain.url}/evidence/acme-shop/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == kind
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (plain.state / "evidence" / "acme-shop" / name).read_bytes()


@pytest.mark.parametrize("target", [
    "/evidence/../storewatch.db",
    "/evidence/acme-shop/../../storewatch.db",
    "/evidence/acme-shop/../../secret.png",
    "/evidence/%2e%2e/secret.png",
    "/evidence/acme-shop%2f..%2f..%2fsecret.png",
    "/evidence/acme-shop/..%2f..%2fsecret.png",
    "/evidence//etc/passwd",
    "/evidence/%2fetc%2fpasswd",
    "/evidence/acme-shop/%00.png",
    "/evidence/acme-shop/.hidden.png",
    "/evidence/acme-shop",
    "/evidence/",
    "/evidence/acme-shop/missing.png",
])
def test_nothing_outside_the_evidence_folder(plain: Agent, target: str) -> None:
    status, body = raw_get(plain.port, target)
    assert status == 404, target
    assert b"SQLite" not in body and PNG not in body


def test_symlinks_out_of_the_folder_are_not_followed(plain: Agent, tmp_path: Path) -> None:
    folder = plain.state / "evidence" / "acme-shop"
    (folder / "escape.png").symlink_to(plain.state / "secret.png")
    (plain.state / "evidence" / "evil").symlink_to(plain.state)  # a folder link out
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(PNG)
    (plain.state / "evidence" / "elsewhere").symlink_to(outside)
    (folder / "inside.png").symlink_to(plain.shot)  # a link within the folder is fine
    for target in ("/evidence/acme-shop/escape.png", "/evidence/evil/secret.png",
                   "/evidence/evil/storewatch.db", "/evidence/elsewhere/x.png"):
        assert raw_get(plain.port, target)[0] == 404, target
    assert raw_get(plain.port, "/evidence/acme-shop/inside.png") == (200, PNG)


def test_other_file_types_and_folders_are_not_served(plain: Agent) -> None:
    folder = plain.state / "evidence" / "acme-shop"
    (folder / "page.html").write_text("<script>alert(1)</script>")
    (folder / "dir.png").mkdir()
    assert raw_get(plain.port, "/evidence/acme-shop/page.html")[0] == 404
    assert raw_get(plain.port, "/evidence/acme-shop/dir.png")[0] == 404


def test_size_cap(plain: Agent) -> None:
    big = plain.state / "evidence" / "acme-shop" / "huge.png"
    with big.open("wb") as f:
        f.truncate(MAX_SERVED_BYTES + 1)  # sparse: no 16 MB written
    status, body = raw_get(plain.port, "/evidence/acme-shop/huge.png")
    assert status == 403 and b"larger than" in body and len(body) < 200


def test_without_an_evidence_folder_nothing_is_served(tmp_path: Path) -> None:
    _state(tmp_path)
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: {"status": "ok"})
    server.start()
    try:
        status, _ = raw_get(server.port, "/evidence/acme-shop/checkout-20260301T100000-pay.png")
    finally:
        server.stop()
    assert status == 404


def test_behind_the_same_tls_and_basic_auth_as_metrics(secured: Agent,
                                                       tls_material: TLSMaterial) -> None:
    trust = ssl.create_default_context(cafile=str(tls_material.ca_cert))
    url = f"{secured.url}/evidence/acme-shop/{secured.shot.name}"
    for auth in (None, ("ops", "wrong"), ("nobody", PASSWORD)):
        refused = httpx.get(url, auth=auth, verify=trust)
        assert refused.status_code == 401 and PNG not in refused.content
    ok = httpx.get(url, auth=("ops", PASSWORD), verify=trust)
    assert (ok.status_code, ok.content) == (200, PNG)


async def test_github_link_leads_to_the_screenshot(plain: Agent) -> None:
    """The link a GitHub issue carries is one the agent answers."""
    github = fakes.FakeGitHub()
    incident = dataclasses.replace(make_incident(), evidence=Evidence(
        details={"screenshot": str(plain.shot)}))
    async with httpx.AsyncClient() as http:
        ctx = SinkBuildContext("gh", lambda: http, plain.state, "sw/1", evidence_url=plain.url)
        with github.router:
            ref = await build_sink("github", config("github", github.base_url), ctx).open(
                incident)
    link = re.search(r"\]\((http://[^)]+)\)", github.tickets[ref.external_id].data["body"])
    assert link is not None
    response = httpx.get(link.group(1))
    assert (response.status_code, response.content) == (200, PNG)


def test_incidents_show_prints_paths_and_urls(plain: Agent, tmp_path: Path) -> None:
    state = tmp_path / "agent-state"
    folder = state / "evidence" / "acme-shop"
    folder.mkdir(parents=True)
    shot, log = folder / "pay.png", folder / "pay.json"
    shot.write_bytes(PNG)
    store = Store(db_path(state))
    with store.transaction():
        incident = store.create_incident(
            fingerprint="storewatch-0123456789ab", site="acme-shop", check="checkout",
            kind=FindingKind.CHECKOUT_BROKEN, level=Level.L1, now=datetime.now(UTC),
            summary="step 'pay': Place order does nothing", rule="browser", reason="r",
            evidence=Evidence(details={"screenshot": str(shot), "browser_log": str(log)}))
    store.close()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(state)},
        "sites": [{"name": "acme-shop", "base_url": "http://shop.test",
                   "checks": [{"name": "home", "path": "/"}]}],
        "incidents": {"evidence": {"url": "https://agent-fra.example:9478"}}}))
    shown = storewatch("incidents", "show", str(incident), "-c", str(cfg))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    i = lines.index(f"  screenshot: {shot}")
    assert lines[i + 1] == "    https://agent-fra.example:9478/evidence/acme-shop/pay.png"
    assert f"  browser log: {log} (no longer on disk)" in lines  # never written, or pruned
    as_json = storewatch("incidents", "show", str(incident), "--json", "-c", str(cfg))
    files = json.loads(as_json.stdout)["evidence_files"]
    assert files == [
        {"label": "screenshot", "path": str(shot), "exists": True,
         "url": "https://agent-fra.example:9478/evidence/acme-shop/pay.png"},
        {"label": "browser log", "path": str(log), "exists": False,
         "url": "https://agent-fra.example:9478/evidence/acme-shop/pay.json"}]
    bare = storewatch("incidents", "show", str(incident), "--state-dir", str(state))
    assert f"  screenshot: {shot}" in bare.stdout.splitlines()
    assert "https://" not in bare.stdout  # no config read: the URL is not known
    assert os.path.isfile(shot)


def test_a_bad_evidence_url_is_one_line_naming_where(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sites:\n  - name: shop\n    base_url: http://shop.test\n    checks:\n"
                   "      - {name: home, path: /}\nincidents:\n  evidence:\n"
                   "    url: https://ops:pw@agent.example:9478\n    retention: 0s\n")
    result = storewatch("validate", "-c", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"storewatch: {cfg}:8: incidents.evidence.url: ")
               and "no credentials" in line for line in lines), lines
    assert any(f"{cfg}:9: incidents.evidence.retention" in line for line in lines), lines
    assert "Traceback" not in result.stderr
