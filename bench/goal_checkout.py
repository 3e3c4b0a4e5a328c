"""Goal 3: CPU and wall time of one full generic checkout, agent probe path vs bare requests.

The demo store runs as its own process on the helper CPU (its CPU is not counted); each rep runs
one ``bench.checkout_worker`` process per mode (rotated order) on the measured CPU, ``runs``
checkouts one after another. Figure: median over reps of each rep's per-run median.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import env
from bench.stats import Row, median, spread

MODES = ("agent", "bare")


def _worker(mode: str, url: str, runs: int, state_dir: Path) -> dict[str, Any]:
    out = subprocess.run([*env.pin(env.MEASURED_CPU), sys.executable, "-m",
                          "bench.checkout_worker", mode, url, "-n", str(runs),
                          "--state-dir", str(state_dir)],
                         capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(reps: int, runs: int, workdir: Path, log: object) -> tuple[list[Row], dict[str, object]]:
    """Both modes x reps against a fresh demo store; rows plus raw per-rep medians (ms)."""
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    errors = 0
    with env.demo_store() as store:
        for rep in range(reps):
            for mode in MODES[rep % 2:] + MODES[:rep % 2]:
                r = _worker(mode, store.url, runs, workdir)
                errors += int(r["errors"])
                cpu[mode].append(median(r["cpu_s"]) * 1000)
                wall[mode].append(median(r["wall_s"]) * 1000)
            print(f"  goal 3 rep {rep + 1}/{reps}: " + ", ".join(
                f"{m} {cpu[m][-1]:.2f} ms CPU / {wall[m][-1]:.2f} ms wall" for m in MODES),
                file=log)  # type: ignore[call-overload]
    agent_cpu, bare_cpu = median(cpu["agent"]), median(cpu["bare"])
    agent_wall, bare_wall = median(wall["agent"]), median(wall["bare"])
    what = (f"full generic checkout (demo.yaml `checkout`: 4 steps, 5 requests), {runs} runs "
            f"x {reps} reps")
    rows = [
        Row("3", f"CPU ms per {what}, agent probe path", spread(cpu["agent"], "{:.2f}"),
            f"same requests bare (`HttpClients` + `fetch`) {spread(cpu['bare'], '{:.2f}')}",
            f"{agent_cpu / bare_cpu:.2f}x", "report", ""),
        Row("3", "... wall ms per checkout (demo store on CPU 1)",
            spread(wall["agent"], "{:.2f}"), f"bare {spread(wall['bare'], '{:.2f}')}",
            f"{agent_wall / bare_wall:.2f}x", "report", ""),
    ]
    if errors:
        rows.append(Row("3", f"... failed runs (not a healthy store?): {errors}", "-", "-",
                        "-", "-", "no"))
    return rows, {"cpu_ms": cpu, "wall_ms": wall, "errors": errors}
