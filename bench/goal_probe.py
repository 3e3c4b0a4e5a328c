"""Goal 1: CPU per availability probe, agent path vs blackbox_exporter vs a bare loop.

Each rep runs every mode once in rotated order (so modes share the host's noise); the figure is
the median over reps of CPU-seconds per probe of the measured process on CPU 0. blackbox's CPU
comes from /proc while a driver on CPU 1 calls its /probe with the same concurrency.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from bench import env
from bench.stats import Row, median, spread

CONCURRENCY = 50
CLIENT_MODES = ("agent", "agent-stock", "bare", "bare-stock", "bare-aiohttp", "raw")


def _worker(mode: str, url: str, ca: Path, n: int, profile: Path | None = None) -> dict[str, float]:
    cmd = [*env.pin(env.MEASURED_CPU), sys.executable, "-m", "bench.probe_worker", mode, url,
           "--ca", str(ca), "-n", str(n), "-c", str(CONCURRENCY), "--max-s", "30"]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _blackbox(bb: env.Blackbox, module: str, url: str, n: int) -> dict[str, float]:
    probe = f"{bb.url}/probe?module={module}&target={quote(url + '/')}"
    cpu0 = env.proc_cpu_s(bb.pid)
    out = subprocess.run([*env.pin(env.HELPER_CPU), sys.executable, "-m",
                          "bench.blackbox_driver", probe, "-n", str(n), "-c", str(CONCURRENCY)],
                         capture_output=True, text=True, timeout=120, check=True)
    cpu = env.proc_cpu_s(bb.pid) - cpu0
    result: dict[str, float] = json.loads(out.stdout)
    result["cpu_s"] = cpu
    result["rss_mib"] = env.proc_rss_mib(bb.pid)
    return result


def run(target: env.Target, bb: env.Blackbox, tls: env.TLS, reps: int, n_http: int,
        n_https: int, workdir: Path, log: object) -> tuple[list[Row], dict[str, object]]:
    """All modes x reps for HTTP and HTTPS; rows for the table plus raw figures."""
    modes = ("blackbox", *CLIENT_MODES)
    per_probe: dict[tuple[str, str], list[float]] = {}
    errors = 0
    for scheme, url, module, n in (("http", target.http_url, "http_2xx", n_http),
                                   ("https", target.https_url, "https_2xx", n_https)):
        for rep in range(reps):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                r = (_blackbox(bb, module, url, n) if mode == "blackbox"
                     else _worker(mode, url, tls.ca, n))
                errors += int(r["errors"])
                per_probe.setdefault((scheme, mode), []).append(r["cpu_s"] / r["n"] * 1000)
            print(f"  goal 1 {scheme} rep {rep + 1}/{reps}: " + ", ".join(
                f"{m} {per_probe[(scheme, m)][-1]:.3f}" for m in modes) + " ms/probe",
                file=log)  # type: ignore[call-overload]
    # The hot-path profile of the shipped agent path and of the stock "before", same run.
    for mode in ("agent", "agent-stock"):
        _worker(mode, target.http_url, tls.ca, n_http, workdir / f"profile-{mode}.txt")
    rows: list[Row] = []
    med = {k: median(v) for k, v in per_probe.items()}
    for scheme in ("http", "https"):
        bbx, agent = med[(scheme, "blackbox")], med[(scheme, "agent")]
        bare = med[(scheme, "bare")]
        label = "plain HTTP" if scheme == "http" else "HTTPS (RSA-2048, TLS 1.3)"
        rows.append(Row("1", f"CPU ms per availability probe, whole agent path, {label}",
                        spread(per_probe[(scheme, "agent")]),
                        f"blackbox_exporter {spread(per_probe[(scheme, 'blackbox')])}",
                        f"{agent / bbx:.2f}x", "≤ 1.0x", "yes" if agent <= bbx else "no"))
        rows.append(Row("1", f"... same vs a bare loop on the same HTTP stack, {label}",
                        f"{agent:.3f}", f"bare `client.get` {spread(per_probe[(scheme, 'bare')])}",
                        f"{agent / bare:.2f}x", "≤ 1.25x", "yes" if agent <= 1.25 * bare else "no"))
        stock = med[(scheme, "agent-stock")]
        rows.append(Row("1", f"... before: agent path on stock httpx transport, {label}",
                        spread(per_probe[(scheme, "agent-stock")]), f"blackbox {bbx:.3f}",
                        f"{stock / bbx:.2f}x", "(before/after)", ""))
        for mode, name in (("bare-stock", "bare stock httpx (httpcore/h11/anyio)"),
                           ("bare-aiohttp", "bare httpx over `httpx-aiohttp`"),
                           ("raw", "raw asyncio streams (Python floor)")):
            rows.append(Row("1", f"... reference: {name}, {label}",
                            spread(per_probe[(scheme, mode)]), f"blackbox {bbx:.3f}",
                            f"{med[(scheme, mode)] / bbx:.2f}x", "-", ""))
    return rows, {"per_probe_ms": {f"{s}/{m}": v for (s, m), v in per_probe.items()},
                  "errors": errors}
