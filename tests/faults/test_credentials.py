"""Credentials never leave their origin; TLS verification is on unless a site opts out, loudly."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.schema import Config
from agent.httpclient import HttpClients
from agent.probes.availability import probe_availability
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from tests.conftest import storewatch
from tests.faults.certs import HostileCerts
from tests.faults.hostile import MARKER, HostileServer

BASIC = "Basic " + base64.b64encode(b"shop-admin:b4sic-p4ss").decode()
CREDENTIALS = {"Authorization": BASIC, "Cookie": "session=c00kie-value",
               "X-Api-Key": "k3y-value", "Proxy-Authorization": BASIC}
SECRET_VALUES = ("b4sic", "c00kie-value", "k3y-value", "s3ss10n-cookie",
                 base64.b64encode(b"shop-admin:b4sic-p4ss").decode())


async def probe(base_url: str, path: str, **site: Any) -> ProbeResult:
    config = Config.model_validate({"sites": [{
        "name": "shop", "base_url": base_url, **site,
        "checks": [{"name": "c", "path": path, "headers": CREDENTIALS,
                    "body_contains": [MARKER]}]}]})
    clients = HttpClients("storewatch-faults")
    try:
        ctx = ProbeContext(clients, config.sites[0], 2.0)
        return await run_guarded(probe_availability, config.sites[0].checks[0],  # type: ignore[arg-type]
                                 ctx)
    finally:
        await clients.aclose()


def leaked(headers: dict[str, str]) -> list[str]:
    text = repr(headers)
    return [s for s in SECRET_VALUES if s in text]


@pytest.mark.parametrize(
    ("listener", "path"),
    [("plain", "/redirect-away"), ("good", "/redirect-plain")],
    ids=["other-host", "https-to-http-other-port"],
)
async def test_credentials_are_dropped_when_a_redirect_leaves_the_origin(
        hostile: HostileServer, hostile_certs: HostileCerts, listener: str, path: str) -> None:
    base = hostile.url if listener == "plain" else hostile.tls_urls["good"]
    tls = {} if listener == "plain" else {"tls": {"ca_file": str(hostile_certs.ca_cert)}}
    result = await probe(base, path, **tls)
    assert result.success, result.findings
    (_, first_path, first), (_, landed_path, landed) = hostile.seen
    assert (first_path, landed_path) == (path, "/echo")
    assert first["authorization"] == BASIC and first["cookie"] == "session=c00kie-value"
    assert leaked(landed) == []  # no Authorization, Cookie, API key nor the Set-Cookie value
    assert "user-agent" in landed


async def test_credentials_stay_on_a_same_origin_redirect(hostile: HostileServer) -> None:
    result = await probe(hostile.url, "/redirect-same")
    assert result.success, result.findings
    (_, _, landed) = hostile.seen[-1]
    assert landed["authorization"] == BASIC and landed["x-api-key"] == "k3y-value"


async def test_cookies_set_by_one_response_are_never_replayed(hostile: HostileServer) -> None:
    for _ in range(2):
        await probe(hostile.url, "/redirect-away")
    assert all("s3ss10n-cookie" not in repr(h) for _, _, h in hostile.seen)


async def test_verification_is_on_by_default(hostile: HostileServer) -> None:
    config = Config.model_validate({"sites": [{"name": "s", "base_url": "https://x.example",
                                               "checks": [{"name": "c"}]}]})
    assert config.sites[0].tls.verify is True
    result = await probe(hostile.tls_urls["selfsigned"], "/ok")
    assert not result.success
    assert result.findings[0].evidence.details["failure"] == "tls"


def test_opting_out_of_verification_is_logged_loudly(hostile_certs: HostileCerts,
                                                     tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sites": [
        {"name": "careless", "base_url": "https://careless.example", "tls": {"verify": False},
         "checks": [{"name": "home"}]},
        {"name": "careful", "base_url": "https://careful.example", "checks": [{"name": "home"}]},
    ]}))
    proc = storewatch("validate", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "TLS verification is OFF for site careless" in warnings[0]


async def test_opted_out_site_is_probed_without_verification(hostile: HostileServer) -> None:
    result = await probe(hostile.tls_urls["selfsigned"], "/ok", tls={"verify": False})
    assert result.success, result.findings
