"""Drive blackbox_exporter's /probe at a fixed concurrency: ``python -m bench.blackbox_driver``.

Runs on the helper CPU with keep-alive connections to the exporter (like ``wrk``); prints one
JSON line with probes done, failed probes (``probe_success 0`` or non-200) and wall seconds.
The exporter's CPU is read from /proc by the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def drive(url: str, n: int, conc: int, max_s: float) -> dict[str, float]:
    """``n`` probes through ``url`` (a full /probe?... URL) with ``conc`` in flight."""
    left, done, failed = n, 0, 0
    deadline = time.monotonic() + max_s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

        async def worker() -> None:
            nonlocal left, done, failed
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                async with session.get(url) as resp:
                    body = await resp.read()
                done += 1
                if resp.status != 200 or b"\nprobe_success 1" not in body:
                    failed += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return {"n": done, "errors": failed, "wall_s": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-c", type=int, default=50)
    p.add_argument("--max-s", type=float, default=20.0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(drive(a.url, a.n, a.c, a.max_s))))


if __name__ == "__main__":
    main()
