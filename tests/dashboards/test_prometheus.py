"""A real Prometheus on loopback scrapes a running agent (demo store, TLS site, host section)
and evaluates every expression of dashboards/ and dashboards/rules/ through its HTTP API.

Skipped locally without the ``prometheus`` binary; in CI (CI=true) a missing binary fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.service import Agent
from tests.agent.host.conftest import MARKER
from tests.agent.servers import free_port, serve
from tests.conftest import TLSMaterial
from tests.dashboards.promql import (
    RULE_FILES,
    Expr,
    all_exprs,
    data_form,
    label_values,
    substitute,
)

pytestmark = pytest.mark.slow
AGENT_JOIN = ("storewatch_probe_success * on(instance, job) group_left(agent, location) "
              "storewatch_agent_info")
"""The join docs/metrics.md shows: the agent's labels onto a check series."""
FAILING_FROM_TWO_LOCATIONS = (
    "count by (site) (count by (site, location) ((storewatch_probe_success == 0) "
    "* on(instance, job) group_left(location) storewatch_agent_info)) >= 2")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} not installed (Debian package prometheus; .ci/run installs it)")
    return path


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><main id='maincontent'>shop</main></html>",
                        content_type="text/html")


def agent_config(store: str, secure: str, ca: Path, mail_cmd: str, state_dir: Path) -> Config:
    return Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "name": "probe-1", "location": "fra",
                  "state_dir": str(state_dir)},
        "defaults": {"interval": "1s", "timeout": "0.8s"},
        "sites": [
            {"name": "demo", "base_url": store,
             "checks": [{"name": "home"}, {"name": "checkout", "path": "/checkout"},
                        {"name": "missing-page", "path": "/no-such-page"}]},
            {"name": "secure", "base_url": secure, "tls": {"ca_file": str(ca)},
             "checks": [{"name": "home"}]},
        ],
        "host": {"site": "demo", "interval": "1s", "reading_timeout": "0.5s",
                 "services": [{"name": "marked", "cmdline": [MARKER]},
                              {"name": "php-fpm", "process_names": ["php-fpm-not-running"]}],
                 "mail_queue": {"mta": "command", "command": [mail_cmd], "interval": "1s"},
                 "heartbeat": {"url": store + "/", "interval": "1s"}},
    })


@pytest.fixture
async def running_agent(store: DemoStore, tls_material: TLSMaterial,
                        tmp_path: Path) -> AsyncIterator[Agent]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_material.leaf_cert), str(tls_material.key))
    mail = tmp_path / "mailq"
    mail.write_text('#!/bin/sh\necho \'{"messages": 2, "oldest_age_seconds": 90}\'\n')
    mail.chmod(0o755)
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", MARKER])
    async with serve({"/": _ok}, ctx) as secure:
        agent = Agent("test.yaml", agent_config(store.url, secure, tls_material.ca_cert,
                                                str(mail), tmp_path / "state"))
        task = asyncio.create_task(agent.serve())
        try:
            yield agent
        finally:
            agent.stop()
            await task
            marked.kill()
            marked.wait()


async def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}")
            try:
                if (await client.get(base + "/-/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("prometheus never became ready")


async def _series(client: httpx.AsyncClient, base: str, e: Expr) -> int:
    lv = label_values(e.expr)
    if lv is not None:
        selector, label = lv
        r = await client.get(f"{base}/api/v1/label/{label}/values",
                             params={"match[]": substitute(selector)})
        r.raise_for_status()
        return len(r.json()["data"])
    query = substitute(data_form(e.expr) if e.kind == "alert" else e.expr)
    r = await client.get(f"{base}/api/v1/query", params={"query": query})
    assert r.status_code == 200, f"{e.where}: {query}: {r.text}"
    data = r.json()["data"]
    return len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1


async def test_every_expression_returns_data(running_agent: Agent, tmp_path: Path) -> None:
    prometheus, promtool = binary("prometheus"), binary("promtool")
    target = running_agent.metrics_url.removeprefix("http://").removesuffix("/metrics")
    port = await free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{', '.join(str(p) for p in RULE_FILES)}]\n"
        "scrape_configs:\n"
        f"  - job_name: storewatch\n    static_configs: [{{targets: ['{target}']}}]\n")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _wait_ready(base, proc)
        exprs = all_exprs()
        counts: dict[str, int] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(120):  # rates need two scrapes; rules need an evaluation
                counts = {e.where: await _series(client, base, e) for e in exprs}
                if all(counts.values()):
                    break
                await asyncio.sleep(0.5)
            metrics = (await client.get(running_agent.metrics_url)).text
            joined = (await client.get(f"{base}/api/v1/query", params={"query": AGENT_JOIN}))
            two_locations = await client.get(f"{base}/api/v1/query",
                                             params={"query": FAILING_FROM_TWO_LOCATIONS})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = "\n".join(f"{n:4d}  {w}" for w, n in counts.items())
    print(f"\nseries per expression:\n{report}")
    empty = [w for w, n in counts.items() if n == 0]
    assert not empty, f"no data for: {empty}\n{report}"
    # docs/metrics.md's join: every check series gains the agent's name and location
    series = joined.json()["data"]["result"]
    assert series and {(s["metric"]["agent"], s["metric"]["location"]) for s in series} == \
        {("probe-1", "fra")}
    assert {s["metric"]["check"] for s in series} >= {"home", "checkout"}
    assert two_locations.status_code == 200, two_locations.text  # one agent: no site yet
    assert two_locations.json()["data"]["result"] == []

    check = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    assert "storewatch_host_service_up" in metrics
