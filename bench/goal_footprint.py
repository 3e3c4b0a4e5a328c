"""Goal 4: the idle agent (20 sites x 6 checks every 60 s) against a bare Python process.

The agent is the real CLI (``python -m agent run``) on CPU 0, probing the nginx target over
HTTPS (shops are HTTPS; the site's CA file holds one CA, as the OS store loads one); a second
agent probes the same target over plain HTTP, to show what the TLS handshakes cost. Ready =
spawn to the first ``/healthz`` answer. The baseline is a bare Python process that imports what
perf-anchors.md's idle-agent baseline imports (httpx, prometheus_client, apscheduler, psutil,
yaml) and then listens; blackbox_exporter's fresh RSS is given for reference.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench import env
from bench.stats import Row

SITES, CHECKS, INTERVAL = 20, 6, 60
BASELINE = """
import socket, sys, time
import httpx, prometheus_client, psutil, yaml
import apscheduler.schedulers.asyncio, apscheduler.triggers.interval
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    conn, _ = s.accept(); conn.recv(100)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
    conn.close()
"""


def _config(d: Path, url: str, port: int, ca: Path) -> Path:
    lines = ["agent:", f"  listen: 127.0.0.1:{port}", f"  state_dir: {d}/state", "defaults:",
             f"  interval: {INTERVAL}s", "  timeout: 5s", "sites:"]
    for s in range(SITES):
        lines += [f"  - name: shop{s}", f"    base_url: {url}", f"    tls: {{ca_file: {ca}}}",
                  "    checks:"]
        for k in range(CHECKS):
            path = "/" if k == 0 else f"/?page={k}"
            lines += [f"      - name: page{k}", "        type: availability",
                      f"        path: \"{path}\"", "        body_contains: [storewatch bench]"]
    config = d / "footprint.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _ready(cmd: list[str], port: int, path: str) -> tuple[subprocess.Popen[bytes], float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = start + 30
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return proc, time.perf_counter() - start
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}") from None
            time.sleep(0.005)
    proc.kill()
    raise RuntimeError(f"{cmd} not ready in 30 s")


def _uss_mib(pid: int) -> float:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def _blackbox_at_rate(bb: env.Blackbox, module: str, url: str, per_s: float,
                      window_s: float) -> tuple[float, int]:
    """blackbox_exporter's CPU share while it is asked for ``per_s`` probes a second."""
    probe = f"{bb.url}/probe?module={module}&target={urllib.parse.quote(url + '/')}"
    gap = 1 / max(per_s, 0.1)
    cpu0, t0 = env.proc_cpu_s(bb.pid), time.perf_counter()
    done = 0
    while time.perf_counter() - t0 < window_s:
        with urllib.request.urlopen(probe, timeout=10) as resp:
            resp.read()
        done += 1
        time.sleep(max(0.0, t0 + done * gap - time.perf_counter()))
    return (env.proc_cpu_s(bb.pid) - cpu0) / (time.perf_counter() - t0), done


def _idle_agent(d: Path, url: str, ca: Path, window_s: float) -> dict[str, float]:
    """One idle agent probing ``url``: RSS/USS, CPU share over ``window_s`` after a 5 s
    settle, spawn-to-ready time and the probe runs done by the end."""
    port = env.free_port()
    agent, ready = _ready([*env.pin(env.MEASURED_CPU), sys.executable, "-m", "agent", "run",
                           "-c", str(_config(d, url, port, ca))], port, "/healthz")
    try:
        time.sleep(5)
        cpu0, t0 = env.proc_cpu_s(agent.pid), time.perf_counter()
        time.sleep(window_s)
        share = (env.proc_cpu_s(agent.pid) - cpu0) / (time.perf_counter() - t0)
        rss, uss = env.proc_rss_mib(agent.pid), _uss_mib(agent.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            runs = sum(float(line.rsplit(" ", 1)[1]) for line in resp.read().decode().splitlines()
                       if line.startswith("storewatch_probe_runs_total{"))
    finally:
        env.stop_process(agent)
    return {"rss": rss, "uss": uss, "cpu_share": share, "ready_s": ready, "runs": runs}


def run(target: env.Target, d: Path, window_s: float,
        tls: env.TLS) -> tuple[list[Row], dict[str, float]]:
    """Measure the agent (HTTPS, then plain HTTP targets) and the baselines."""
    (d / "https").mkdir(exist_ok=True)
    (d / "http").mkdir(exist_ok=True)
    tls_agent = _idle_agent(d / "https", target.https_url, tls.ca, window_s)
    http_agent = _idle_agent(d / "http", target.http_url, tls.ca, window_s)
    bport = env.free_port()
    base, base_ready = _ready([*env.pin(env.MEASURED_CPU), sys.executable, "-c", BASELINE,
                               str(bport)], bport, "/")
    try:
        time.sleep(1)
        base_rss, base_uss = env.proc_rss_mib(base.pid), _uss_mib(base.pid)
    finally:
        env.stop_process(base)
    bbdir = d / "bb-fresh"
    bbdir.mkdir()
    with env.blackbox(bbdir, tls) as bb:
        time.sleep(0.5)
        bb_rss = env.proc_rss_mib(bb.pid)
        tls_rate = tls_agent["runs"] / (window_s + 5)
        http_rate = http_agent["runs"] / (window_s + 5)
        bb_tls, bb_tls_n = _blackbox_at_rate(bb, "https_2xx", target.https_url, tls_rate,
                                             window_s)
        bb_http, bb_http_n = _blackbox_at_rate(bb, "http_2xx", target.http_url, http_rate,
                                               window_s)
        bb_after = env.proc_rss_mib(bb.pid)
    agent_rss, agent_uss = tls_agent["rss"], tls_agent["uss"]
    figures = {"agent_rss": agent_rss, "agent_uss": agent_uss,
               "cpu_share": tls_agent["cpu_share"], "http_cpu_share": http_agent["cpu_share"],
               "agent_ready_s": tls_agent["ready_s"], "base_rss": base_rss,
               "base_uss": base_uss, "base_ready_s": base_ready, "blackbox_rss": bb_rss,
               "runs": tls_agent["runs"], "http_runs": http_agent["runs"],
               "blackbox_share": bb_tls, "blackbox_http_share": bb_http,
               "blackbox_rss_after": bb_after}

    def cpu_row(what: str, share: float, rate: float, bb_share: float, bb_n: int) -> Row:
        return Row("4", f"idle agent CPU share ({window_s:.0f} s window, {rate:.1f} {what} "
                        "probes/s)", f"{share * 100:.2f} %",
                   f"blackbox at the same probe rate {bb_share * 100:.2f} % ({bb_n} probes)",
                   f"{share / bb_share:.1f}x" if bb_share else "-", "≤ 0.5 %",
                   "yes" if share <= 0.005 else "no")

    agent_ready = tls_agent["ready_s"]
    rows = [
        Row("4", f"idle agent RSS, {SITES} sites x {CHECKS} checks @ {INTERVAL}s (USS)",
            f"{agent_rss:.1f} MiB ({agent_uss:.1f})",
            f"bare Python + same-era imports {base_rss:.1f} MiB ({base_uss:.1f}); "
            f"blackbox fresh {bb_rss:.1f}, after the probes {bb_after:.1f}",
            f"{agent_rss / base_rss:.2f}x", "≤ 45 MB",
            "yes" if agent_rss * 1.048576 <= 45 else "no"),
        cpu_row("HTTPS", tls_agent["cpu_share"], tls_rate, bb_tls, bb_tls_n),
        cpu_row("plain HTTP", http_agent["cpu_share"], http_rate, bb_http, bb_http_n),
        Row("4", "spawn → ready (/healthz answers)", f"{agent_ready * 1000:.0f} ms",
            f"bare Python + imports {base_ready * 1000:.0f} ms",
            f"{agent_ready / base_ready:.2f}x", "report", ""),
    ]
    return rows, figures
