"""``python -m bench`` (``make bench``): every benchmark, then the Performance table.

Starts nginx (HTTP + HTTPS with an openssl-made certificate) and blackbox_exporter on
127.0.0.1, runs goals 1-6 (see README "Performance"; goals 3 and 6 against the bundled demo
store in its own process), and prints the markdown table and the machine description; ``--out
FILE`` also writes them (with the hot-path profiles next to it). Installs the two Debian
packages when missing and running as root. ``python -m bench fleet [--quick]``: the fleet
figures (bench/goal_fleet.py: agents and writers sharing one PostgreSQL store).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import env, goal_checkout, goal_detect, goal_footprint, goal_probe, goal_scale
from bench.stats import Row, table


def _scrape(sites: int) -> tuple[list[Row], dict[str, float]]:
    out = subprocess.run([*env.pin(env.MEASURED_CPU), sys.executable, "-m",
                          "bench.scrape_worker", str(sites)],
                         capture_output=True, text=True, timeout=300, check=True)
    r: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [
        Row("5", f"/metrics generation, {sites:,} sites x every check type "
                 f"({r['series']:,.0f} series, {r['bytes'] / 1e6:.2f} MB)",
            f"{r['agent_s'] * 1000:.0f} ms",
            f"prometheus-client direct exposition of the same series "
            f"{r['direct_s'] * 1000:.0f} ms ({r['direct_bytes'] / 1e6:.2f} MB)",
            f"{r['agent_s'] / r['direct_s']:.2f}x", "<= 1.0x",
            "yes" if r["agent_s"] <= r["direct_s"] else "no"),
        Row("5", "... gzip (scraper sends Accept-Encoding: gzip)",
            f"{r['gzip_bytes'] / 1e3:.0f} kB, +{r['gzip_s'] * 1000:.0f} ms",
            f"plain {r['bytes'] / 1e3:.0f} kB", f"{r['gzip_bytes'] / r['bytes']:.3f}x size",
            "-", ""),
        Row("5", "... end-to-end scrape of the agent's /metrics server, plain / gzip",
            f"{r['scrape_plain_s'] * 1000:.0f} / {r['scrape_gzip_s'] * 1000:.0f} ms", "-", "-",
            "-", ""),
    ]
    return rows, r


def main() -> None:
    if sys.argv[1:2] == ["fleet"]:  # issue 15: agents sharing one PostgreSQL store
        from bench import goal_fleet

        goal_fleet.main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--out", type=Path, help="also write the table and machine to this file")
    p.add_argument("--reps", type=int, default=3, help="goal 1 repetitions (default 3)")
    p.add_argument("--probes", type=int, default=3000, help="goal 1 probes per HTTP window")
    p.add_argument("--tls-probes", type=int, default=1000, help="goal 1 probes per HTTPS window")
    p.add_argument("--scale-steps", default="15000,20000,25000,30000,35000,40000",
                   help="goal 2 ramp (checks per step)")
    p.add_argument("--idle-window", type=float, default=30.0, help="goal 4 CPU window, s")
    p.add_argument("--sites", type=int, default=1000, help="goal 5 sites")
    p.add_argument("--checkout-reps", type=int, default=5, help="goal 3 repetitions")
    p.add_argument("--checkout-runs", type=int, default=100, help="goal 3 checkouts per rep")
    p.add_argument("--detect-reps", type=int, default=6, help="goal 6 repetitions")
    p.add_argument("--detect-interval", type=float, default=1.0, help="goal 6 check interval, s")
    p.add_argument("--only", default="1,2,3,4,5,6", help="goals to run")
    a = p.parse_args()
    goals = set(a.only.split(","))
    env.ensure_packages()
    started = time.perf_counter()
    log = sys.stderr
    rows: list[Row] = []
    raw: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="storewatch-bench-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        tls = env.make_tls(d)
        with env.nginx(d, tls) as target, env.blackbox(d, tls) as bb:
            blackbox_ms = 0.31
            if "1" in goals:
                print("goal 1: CPU per probe ...", file=log)
                g1, raw["goal1"] = goal_probe.run(target, bb, tls, a.reps, a.probes,
                                                  a.tls_probes, d, log)
                rows += g1
                per = raw["goal1"]["per_probe_ms"]  # type: ignore[index]
                blackbox_ms = sorted(per["http/blackbox"])[len(per["http/blackbox"]) // 2]
            if "2" in goals:
                print("goal 2: scale ramp ...", file=log)
                steps = [int(s) for s in a.scale_steps.split(",")]
                g2, raw["goal2"] = goal_scale.run(target, steps, blackbox_ms, log)
                rows += g2
            if "4" in goals:
                print("goal 4: idle footprint ...", file=log)
                g4, raw["goal4"] = goal_footprint.run(target, d, a.idle_window, tls)
                rows += g4
        if "5" in goals:
            print("goal 5: scrape ...", file=log)
            g5, raw["goal5"] = _scrape(a.sites)
            rows += g5
        if "3" in goals:
            print("goal 3: checkout flow cost ...", file=log)
            g3, raw["goal3"] = goal_checkout.run(a.checkout_reps, a.checkout_runs, d, log)
            rows += g3
        if "6" in goals:
            print("goal 6: detection latency ...", file=log)
            g6, raw["goal6"] = goal_detect.run(a.detect_reps, a.detect_interval, d, log)
            rows += g6
        if a.out is not None:
            for profile in d.glob("profile-*.txt"):
                shutil.copy(profile, a.out.parent / profile.name)
    elapsed = time.perf_counter() - started
    rows.sort(key=lambda r: r.goal)  # stable: each goal's rows keep their order
    text = (table(rows) + "\n\n"
            f"Machine: {env.machine()}\n\nBench run time: {elapsed / 60:.1f} min "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n")
    print(text)
    if a.out is not None:
        a.out.write_text(text)
        (a.out.with_suffix(".json")).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
