"""``python -m bench.goal_browser``: what a browser journey costs (issue 14's bench).

Against the demo store in JavaScript mode (its own process, on the helper CPU), each worker
(bench/browser_worker.py) pinned to the measured CPU:

- CPU seconds per journey, marginal (runs of 1 and 1+K journeys; launch and imports cancel
  out), for the agent's browser check, the same journey as HTTP steps, and a bare Playwright
  script; CPU is the whole process tree's (``RUSAGE_CHILDREN`` after the worker is reaped);
- peak PSS of the whole tree (agent + driver + Chromium) with 1 and 2 concurrent pages, against
  the bare script's;
- journeys per minute on one core (back to back for ``--window`` s, 2 pages);
- PSS over ``--duration`` s of continuous journeys (the issue asks for 2 h: pass 7200).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench import env
from bench.stats import Row, table

MIB = 1024 * 1024


def _worker(url: str, mode: str, n: int, pages: int = 1, seconds: float = 0.0,
            pss_interval: float = 0.0) -> tuple[float, dict[str, Any]]:
    """Run one worker; (CPU seconds of its whole tree, its JSON line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*env.pin(env.MEASURED_CPU), sys.executable, "-m",
                          "bench.browser_worker", mode, url, str(n), str(pages), str(seconds)],
                         capture_output=True, text=True, check=False,
                         timeout=max(600.0, seconds * 2 + 300),
                         env={**os.environ, "BENCH_PSS_INTERVAL": str(pss_interval)})
    if out.returncode != 0:
        raise RuntimeError(f"{mode} worker failed: {out.stderr.strip()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if doc.get("failed") and not seconds:
        raise RuntimeError(f"{mode}: {doc['failed']} of {doc['journeys']} journeys failed")
    print(f"  {mode} n={n} pages={pages} seconds={seconds:g}: cpu {cpu:.2f} s, "
          f"{ {k: v for k, v in doc.items() if k != 'pss_samples'} }", file=sys.stderr)
    return cpu, doc


def run(journeys: int, window: float, duration: float) -> tuple[list[Row], dict[str, Any]]:
    """Every measurement; the table rows and the raw figures."""
    raw: dict[str, Any] = {}
    with env.demo_store(js=True) as store:
        url = store.url
        for mode in ("agent", "http", "bare"):
            one, _ = _worker(url, mode, 1)
            many, _ = _worker(url, mode, 1 + journeys)
            raw[f"cpu_{mode}"] = max(0.0, (many - one) / journeys)
        for pages in (1, 2):
            for mode in ("agent", "bare"):
                _, doc = _worker(url, mode, 2 * pages, pages, pss_interval=0.1)
                raw[f"pss_{mode}_{pages}"] = doc["peak_pss"] / MIB
        _, doc = _worker(url, "agent", 0, 2, seconds=window)
        raw["per_min_core"] = doc["journeys"] / (doc["wall_s"] / 60.0)
        raw["window_failed"] = doc["failed"]
        _, doc = _worker(url, "agent", 0, 1, seconds=duration, pss_interval=1.0)
        samples = [pss / MIB for _, pss in doc["pss_samples"]]
        quarter = max(1, len(samples) // 4)
        raw["soak_journeys"] = doc["journeys"]
        raw["soak_failed"] = doc["failed"]
        raw["soak_restarts"] = doc["restarts"]
        raw["soak_first_q"] = sorted(samples[:quarter])[quarter // 2]
        raw["soak_last_q"] = sorted(samples[-quarter:])[quarter // 2]
        raw["soak_max"] = max(samples)
    r = raw
    rows = [
        Row("B1", "CPU per browser journey (home, add to cart, cart, checkout), whole tree",
            f"{r['cpu_agent']:.2f} s", f"same journey as HTTP steps {r['cpu_http']:.3f} s; "
            f"bare Playwright script {r['cpu_bare']:.2f} s",
            f"{r['cpu_agent'] / r['cpu_bare']:.2f}x bare", "-", ""),
        Row("B2", "peak PSS, agent + driver + Chromium, 1 page",
            f"{r['pss_agent_1']:.0f} MiB", f"bare script {r['pss_bare_1']:.0f} MiB",
            f"{r['pss_agent_1'] / r['pss_bare_1']:.2f}x", "<= 1.1x",
            "yes" if r["pss_agent_1"] <= 1.1 * r["pss_bare_1"] else "no"),
        Row("B2", "... 2 concurrent pages in one browser",
            f"{r['pss_agent_2']:.0f} MiB", f"bare script {r['pss_bare_2']:.0f} MiB",
            f"{r['pss_agent_2'] / r['pss_bare_2']:.2f}x", "<= 1.1x, <= 650 MB",
            "yes" if r["pss_agent_2"] <= 1.1 * r["pss_bare_2"]
            and r["pss_agent_2"] * MIB <= 650e6 else "no"),
        Row("B3", f"journeys per minute on one core (2 pages, {window:.0f} s)",
            f"{r['per_min_core']:.1f}", f"{r['window_failed']} runs with findings (load)", "-",
            ">= 20",
            "yes" if r["per_min_core"] >= 20 else "no"),
        Row("B4", f"PSS over {duration / 60:.0f} min of continuous journeys "
                  f"({r['soak_journeys']} journeys)",
            f"first quarter {r['soak_first_q']:.0f} MiB, last {r['soak_last_q']:.0f} MiB, "
            f"max {r['soak_max']:.0f} MiB",
            f"restarts {r['soak_restarts']}, {r['soak_failed']} runs with findings",
            f"{r['soak_last_q'] / r['soak_first_q']:.2f}x", "no growth (<= 1.1x)",
            "yes" if r["soak_last_q"] <= 1.1 * r["soak_first_q"] else "no"),
    ]
    return rows, raw


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.goal_browser", description=__doc__)
    p.add_argument("--journeys", type=int, default=5, help="K for the marginal CPU (default 5)")
    p.add_argument("--window", type=float, default=60.0, help="throughput window, s")
    p.add_argument("--duration", type=float, default=600.0,
                   help="soak duration, s (the issue's goal: 7200)")
    a = p.parse_args()
    started = time.perf_counter()
    rows, raw = run(a.journeys, a.window, a.duration)
    print(table(rows))
    print(f"\n{time.perf_counter() - started:.0f} s; raw: {json.dumps(raw)}")
    print(env.machine())


if __name__ == "__main__":
    main()
