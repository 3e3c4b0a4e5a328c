"""Goal 3 worker: full generic checkouts against the demo store, one process per mode.

``python -m bench.checkout_worker MODE STORE_URL -n RUNS`` prints one JSON line with the
per-run CPU seconds (``time.process_time``) and wall seconds of ``RUNS`` checkouts done one after
another (as the scheduler runs one check), after ``WARMUP`` untimed runs. Modes:

* ``agent``: the ``checkout`` check of config/demo.yaml through the whole agent path:
  ``CheckScheduler._job`` → slot → ``probe_steps`` (step engine, extractors, assertions,
  payment/shipping judgement) → classifier → latest results → metrics.
* ``bare``: the same four HTTP exchanges (product page, add-to-cart POST + redirect to /cart,
  shipping estimate, checkout page) made with the same client stack (``HttpClients`` +
  ``fetch``, one cookie jar per run), with only a regex for the form key and no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
CHECK = "demo/checkout"
WARMUP = 3
_FORM_KEY = re.compile(rb'name="form_key" value="([^"]+)"')

Run = Callable[[], Awaitable[bool]]


def demo_config(url: str, state_dir: str) -> Any:
    """config/demo.yaml pointed at ``url``."""
    from agent.config.loader import load_config
    from agent.config.schema import Config
    return load_config(DEMO_CONFIG, Config, env={**os.environ, "STOREWATCH_DEMO_URL": url,
                                                 "STOREWATCH_STATE_DIR": state_dir})


async def _agent(url: str, state_dir: str) -> tuple[Run, Callable[[], Awaitable[None]]]:
    from agent.httpclient import HttpClients
    from agent.metrics.collectors import AgentMetrics
    from agent.pipeline import Classifier, LatestResults
    from agent.scheduler import CheckRunner, CheckScheduler
    config = demo_config(url, state_dir)
    latest = LatestResults()
    clients = HttpClients("storewatch-bench")
    runner = CheckRunner(clients, Classifier(config), latest, AgentMetrics(latest), 1)
    scheduler = CheckScheduler(runner)
    scheduler._planned = {p.key: p for p in config.planned_checks() if p.key == CHECK}
    assert scheduler._planned, f"{CHECK} is not in {DEMO_CONFIG}"

    async def one() -> bool:
        await scheduler._job(CHECK)
        return bool(latest._latest[tuple(CHECK.split("/"))].result.success)  # type: ignore[index]
    return one, clients.aclose


async def _bare(url: str, state_dir: str) -> tuple[Run, Callable[[], Awaitable[None]]]:
    from agent.cookies import RunCookies
    from agent.httpclient import FetchResult, HttpClients, fetch
    config = demo_config(url, state_dir)
    spec = next(c for s in config.sites for c in s.checks if f"{s.name}/{c.name}" == CHECK)
    clients = HttpClients("storewatch-bench")
    client = clients.get()
    limits = {"timeout": float(spec.timeout or config.defaults.timeout),
              "max_body_bytes": int(spec.max_body_bytes), "max_redirects": spec.max_redirects}
    accept = {"Accept": "application/json, text/html;q=0.9, */*;q=0.8"}
    form = {**accept, "Content-Type": "application/x-www-form-urlencoded"}
    as_json = {**accept, "Content-Type": "application/json"}

    async def one() -> bool:
        jar = RunCookies()
        page = await fetch(client, url + "/product/demo-test-product", headers=accept,
                           cookies=jar, **limits)
        if not isinstance(page, FetchResult):
            return False
        key = _FORM_KEY.search(page.body)
        body = b"form_key=" + (key.group(1) if key else b"") + b"&sku=DS-TEST-SKU&qty=1"
        exchanges = [("POST", "/cart/add", form, body),
                     ("POST", "/checkout/estimate-shipping", as_json,
                      b'{"country_id": "US", "postcode": "90001"}'),
                     ("GET", "/checkout", accept, None)]
        ok = True
        for method, path, headers, content in exchanges:
            res = await fetch(client, url + path, method=method, headers=headers,
                              content=content, cookies=jar, **limits)
            ok = ok and isinstance(res, FetchResult) and res.status == 200
        return ok
    return one, clients.aclose


MODES = {"agent": _agent, "bare": _bare}


async def window(mode: str, url: str, n: int, state_dir: str) -> dict[str, Any]:
    """``n`` timed checkouts after the warm-up; per-run CPU and wall seconds."""
    one, close = await MODES[mode](url, state_dir)
    for _ in range(WARMUP):
        await one()
    cpu: list[float] = []
    wall: list[float] = []
    errors = 0
    for _ in range(n):
        c0, w0 = time.process_time(), time.perf_counter()
        ok = await one()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        errors += 0 if ok else 1
    await close()
    return {"mode": mode, "n": n, "errors": errors, "cpu_s": cpu, "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("url")
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--state-dir", default="/tmp")
    a = p.parse_args()
    result = asyncio.run(window(a.mode, a.url.rstrip("/"), a.n, a.state_dir))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
