"""One load window of one client mode, in its own process: ``python -m bench.probe_worker``.

Prints one JSON line: probes done, errors, CPU seconds (``time.process_time`` around the window,
imports and set-up excluded), wall seconds and peak RSS. Concurrency = worker coroutines doing
sequential requests on a shared budget (perf-anchors.md method). Modes:

* ``agent``: the whole agent path per probe: ``CheckScheduler._job`` (the coroutine APScheduler
  fires) → concurrency slot and lateness → ``run_guarded(probe_availability)`` → classifier →
  latest results → metrics counters, with the shared client stack as shipped.
* ``agent-stock``: the same with httpx's stock transport (httpcore + h11 + anyio): "before".
* ``bare``: ``client.get`` + body in a loop on the shipped client stack (same HTTP stack).
* ``bare-stock``: the same on stock httpx (fresh connections).
* ``bare-aiohttp``: httpx over the ``httpx-aiohttp`` transport (force_close), evaluated.
* ``raw``: asyncio streams, ``Connection: close``: the Python floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx


def _stock(ctx: ssl.SSLContext, rules: object = None) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(verify=ctx, trust_env=False, limits=httpx.Limits(
        max_connections=None, max_keepalive_connections=0))


MARKER = "storewatch bench"
"""Text the availability check requires in the page (the bench target's page has it)."""


def _agent_config(url: str, ca: str | None, checks: int) -> Any:
    from agent.config.schema import Config
    tls = {"ca_file": ca} if ca else {}
    return Config.model_validate({
        "agent": {"concurrency": checks, "listen": "127.0.0.1:0"},
        "sites": [{"name": f"shop{i}", "base_url": url, "tls": tls, "checks": [{
            "name": "home", "type": "availability", "body_contains": [MARKER],
            "latency_threshold": "2s"}]} for i in range(checks)]})


async def _agent(url: str, ca: str | None, conc: int,
                 ) -> tuple[Callable[[int], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    from agent.httpclient import HttpClients
    from agent.metrics.collectors import AgentMetrics
    from agent.pipeline import Classifier, LatestResults
    from agent.scheduler import CheckRunner, CheckScheduler
    config = _agent_config(url, ca, conc)
    latest = LatestResults()
    clients = HttpClients("storewatch-bench")
    runner = CheckRunner(clients, Classifier(config), latest, AgentMetrics(latest), conc)
    scheduler = CheckScheduler(runner)
    scheduler._planned = {p.key: p for p in config.planned_checks()}
    keys = list(scheduler._planned)

    async def one(worker: int) -> bool:
        key = keys[worker]
        await scheduler._job(key)
        return bool(latest._latest[tuple(key.split("/"))].result.success)  # type: ignore[index]
    return one, clients.aclose


async def _bare(url: str, ca: str | None, conc: int,
                ) -> tuple[Callable[[int], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    from agent.httpclient import HttpClients
    clients = HttpClients("storewatch-bench")
    client = clients.get(ca_file=Path(ca) if ca else None)

    async def one(worker: int) -> bool:
        response = await client.get(url)
        await response.aread()
        return response.status_code == 200
    return one, clients.aclose


async def _aiohttp_transport(url: str, ca: str | None, conc: int,
                             ) -> tuple[Callable[[int], Awaitable[bool]],
                                        Callable[[], Awaitable[None]]]:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, ssl=ctx,
                                                                   limit=0))
    client = httpx.AsyncClient(transport=AiohttpTransport(client=session), trust_env=False)

    async def one(worker: int) -> bool:
        response = await client.get(url)
        await response.aread()
        return response.status_code == 200

    async def close() -> None:
        await client.aclose()
        await session.close()
    return one, close


async def _raw(url: str, ca: str | None, conc: int,
               ) -> tuple[Callable[[int], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    ctx = ssl.create_default_context(cafile=ca) if parts.scheme == "https" else None
    req = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()

    async def one(worker: int) -> bool:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        writer.write(req)
        data = await reader.read()
        writer.close()
        return data.startswith(b"HTTP/1.1 200")
    return one, _nothing


async def _nothing() -> None:
    return None


MODES = {"agent": _agent, "agent-stock": _agent, "bare": _bare, "bare-stock": _bare,
         "bare-aiohttp": _aiohttp_transport, "raw": _raw}


async def window(mode: str, url: str, ca: str | None, n: int, conc: int, max_s: float,
                 profile: str | None) -> dict[str, Any]:
    """Run ``n`` requests (at most ``max_s`` seconds) with ``conc`` workers."""
    one, close = await MODES[mode](url, ca, conc)
    for w in range(min(conc, 5)):  # warm-up: SSL context, first connection, lazy imports
        await one(w)
    left = n
    done = errors = 0
    deadline = time.monotonic() + max_s

    async def worker(w: int) -> None:
        nonlocal left, done, errors
        while left > 0 and time.monotonic() < deadline:
            left -= 1
            ok = await one(w)
            done += 1
            errors += 0 if ok else 1

    profiler = None
    if profile:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profiler is not None and profile:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, color=False,
                                                      show_all=True))
    await close()
    return {"mode": mode, "n": done, "errors": errors, "cpu_s": cpu, "wall_s": wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("url")
    p.add_argument("--ca")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-c", type=int, default=50)
    p.add_argument("--max-s", type=float, default=20.0)
    p.add_argument("--profile")
    a = p.parse_args()
    if hasattr(os, "sched_setaffinity") and os.environ.get("BENCH_CPU"):
        os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
    if a.mode.endswith("-stock"):
        import agent.httpclient
        setattr(agent.httpclient, "LeanTransport", _stock)  # noqa: B010 - a monkeypatch
    result = asyncio.run(window(a.mode, a.url, a.ca, a.n, a.c, a.max_s, a.profile))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
