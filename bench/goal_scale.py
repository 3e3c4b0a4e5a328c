"""Goal 2: ramp availability checks at a 30 s interval until p99 lateness passes 1 s.

Shortened ramp (so the whole bench fits in 10 minutes): each step is a fresh agent process on
CPU 0 that schedules N checks with first runs spread over the 30 s interval (the production
spread), waits 5 s (plus twice the set-up time, so the start-up burst of checks that fell due
while a large config was being added is over), then measures for 15 s (half an interval:
about N/2 runs, at the steady rate N/30 probes/s). Sites are spread over 16 nginx ports (one
destination takes only ~28k new connections per TIME_WAIT minute; real sites are many
destinations). Steps grow by
5,000 checks until p99 lateness passes 1 s (lateness as the agent measures it: scheduled time
to probe start, queueing for a concurrency slot included), or fewer than 95 % of the due runs
ran in the window, or the largest step is reached.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench import env
from bench.stats import Row

INTERVAL_S = 30.0
WARMUP_S = 5.0
WINDOW_S = 15.0


def _step(n: int, urls: str) -> dict[str, float]:
    out = subprocess.run([*env.pin(env.MEASURED_CPU), sys.executable, "-m", "bench.scale_worker",
                          str(n), urls, "--interval", str(INTERVAL_S), "--warmup", str(WARMUP_S),
                          "--window", str(WINDOW_S)],
                         capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _on_time(r: dict[str, float]) -> bool:
    """On schedule: p99 lateness within 1 s and (nearly) every due run actually ran."""
    return r["p99"] <= 1.0 and r["kept_up"] >= 0.95


def run(target: env.Target, steps: list[int], blackbox_ms: float,
        log: object) -> tuple[list[Row], list[dict[str, float]]]:
    """Ramp over ``steps``; ``blackbox_ms`` (CPU ms per probe, goal 1) gives the baseline."""
    results: list[dict[str, float]] = []
    for n in steps:
        r = _step(n, ",".join(target.scale_urls))
        results.append(r)
        print(f"  goal 2: {n} checks: {r['probes_per_s']:.0f} probes/s, p99 lateness "
              f"{r['p99']:.3f} s, CPU {r['cpu_share']:.2f} core, RSS {r['rss_mib']:.0f} MiB",
              file=log)  # type: ignore[call-overload]
        if not _on_time(r):
            break
    on_time = [r for r in results if _on_time(r)]
    best = on_time[-1] if on_time else None
    over = next((r for r in results if not _on_time(r)), None)
    rows: list[Row] = []
    if best is not None:
        knee = (f"between {best['checks']:.0f} and {over['checks']:.0f}" if over
                else f"> {best['checks']:.0f} (largest step)")
        bb_core = best["probes_per_s"] * blackbox_ms / 1000
        rows.append(Row("2", f"checks on schedule on one core (p99 lateness <= 1 s, >= 95 % of "
                        f"due runs done); knee {knee}",
                        f"{best['checks']:.0f} checks: {best['probes_per_s']:.0f} probes/s, "
                        f"p99 {best['p99']:.2f} s, CPU {best['cpu_share']:.2f} core, "
                        f"RSS {best['rss_mib']:.0f} MiB",
                        f"blackbox CPU at that probe rate {bb_core:.2f} core",
                        f"{best['cpu_share'] / bb_core:.2f}x CPU", ">= 20,000 checks",
                        "yes" if best["checks"] >= 20_000 else "no"))
    for r in results:
        rows.append(Row("2", f"... ramp step {r['checks']:.0f} checks @ 30 s",
                        f"{r['probes_per_s']:.0f} probes/s, p50/p99/max lateness "
                        f"{r['p50']:.3f}/{r['p99']:.3f}/{r['max']:.3f} s, CPU "
                        f"{r['cpu_share']:.2f} core ({r['cpu_ms_per_probe']:.2f} ms/probe), "
                        f"RSS {r['rss_mib']:.0f} MiB; ran {r['kept_up']:.0%} of the runs due",
                        "-", "-", "p99 <= 1 s, >= 95 % of runs",
                        "yes" if _on_time(r) else "no"))
    return rows, results
