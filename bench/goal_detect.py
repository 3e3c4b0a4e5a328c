"""Goal 6: detection latency, fault on in the demo store → incident open → ticket stored.

Per rep: a fresh ``python -m agent run`` subprocess (measured CPU) watches the demo store (its own
process) with one availability check every ``interval`` s, jitter 0, L1 confirmations 2, and the
sqlite sink (default). Once two healthy runs have started, the run grid is read from
``storewatch_probe_last_run_timestamp_seconds`` (start of the last run, agent's /metrics); the
fault (``server_error``: 503 → ``site_down``, L1) is switched on with ``POST /_demo/faults`` at a
chosen phase of that grid (spread evenly over the reps). Then ``opened_at`` of the incident and
``created_at`` of its ticket are read from ``<state_dir>/storewatch.db``.

Theoretical minimum (no agent overhead, zero-length runs): the first failing run starts at the
next grid point after the fault, and the incident opens when the ``confirmations``-th failing run
starts; with ``phase`` = fault time - start of the last run before the fault (0 ≤ phase <
interval), minimum = interval x confirmations - phase. Overhead = measured - minimum.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import env
from bench.stats import Row, median

CONFIRMATIONS = 2
FAULT = "server_error"
_LAST_RUN = re.compile(
    r'^storewatch_probe_last_run_timestamp_seconds\{[^}]*check="home"[^}]*\} (\S+)$', re.M)


def write_config(path: Path, store_url: str, metrics_port: int, interval: float) -> None:
    """The daemon's config: one availability check on the demo store, sqlite sink only."""
    path.write_text(textwrap.dedent(f"""\
        agent:
          listen: 127.0.0.1:{metrics_port}
          state_dir: {path.parent / 'state'}
          jitter: 0
        defaults:
          interval: {interval}s
          timeout: {interval * 0.8:.2f}s
        incidents:
          confirm_l1: {CONFIRMATIONS}
        sites:
          - name: demo
            base_url: {store_url}
            plan: support-package
            checks:
              - name: home
                path: /
                body_contains: ["Demo Outfitters"]
        """))


def set_faults(store_url: str, faults: list[str]) -> None:
    """``POST /_demo/faults`` on the demo store."""
    req = urllib.request.Request(f"{store_url}/_demo/faults", method="POST",
                                 data=json.dumps({"faults": faults}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as res:
        res.read()


def last_run(metrics_port: int) -> float | None:
    """Start time of the home check's last run, from the agent's /metrics (None: none yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=2) as res:
            text = res.read().decode()
    except OSError:
        return None
    match = _LAST_RUN.search(text)
    value = float(match.group(1)) if match else 0.0
    return value or None


def _query(db: Path, sql: str) -> list[sqlite3.Row]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        conn.close()


def _wait(what: str, condition: Any, timeout: float, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise RuntimeError(f"goal 6: timed out waiting for {what}")


def one_rep(store_url: str, workdir: Path, interval: float, fraction: float) -> dict[str, float]:
    """One fault → ticket measurement with the fault at ``fraction`` of the run interval."""
    workdir.mkdir(parents=True)
    config, port = workdir / "config.yaml", env.free_port()
    write_config(config, store_url, port, interval)
    db = workdir / "state" / "storewatch.db"
    with (workdir / "daemon.log").open("wb") as log:
        proc = subprocess.Popen([*env.pin(env.MEASURED_CPU), sys.executable, "-m", "agent",
                                 "run", "-c", str(config)], stdout=log, stderr=log)
    try:
        first = _wait("the first run", lambda: last_run(port), 20, 0.02)
        grid = _wait("a second run", lambda: (t := last_run(port)) and t > first and t,
                     interval * 3 + 5, 0.02)
        _wait("the state database", db.exists, 10)
        # The fault goes on at `fraction` of an interval after a grid point at least 0.2 s ahead.
        fault_at = grid + fraction * interval
        while fault_at < time.time() + 0.2:
            fault_at += interval
        time.sleep(fault_at - time.time())
        fault_on = time.time()
        set_faults(store_url, [FAULT])
        ticket = _wait("the ticket", lambda: _query(db, "SELECT created_at FROM local_tickets"),
                       interval * (CONFIRMATIONS + 3) + 5)
        opened = _query(db, "SELECT opened_at, first_seen FROM incidents "
                            "WHERE kind = 'site_down' AND opened_at IS NOT NULL")
        after = last_run(port) or grid
    finally:
        set_faults(store_url, [])
        env.stop_process(proc)
    phase = (fault_on - grid) % interval
    minimum = interval * CONFIRMATIONS - phase
    return {"phase_s": phase, "minimum_s": minimum,
            "open_s": opened[0]["opened_at"] - fault_on,
            "ticket_s": ticket[0]["created_at"] - fault_on,
            "first_seen_s": opened[0]["first_seen"] - fault_on,
            # runs started on the grid? (distance of a later run start from it, s)
            "grid_drift_s": abs((after - grid + interval / 2) % interval - interval / 2)}


def run(reps: int, interval: float, workdir: Path,
        log: object) -> tuple[list[Row], dict[str, object]]:
    """``reps`` measurements at phases spread over the interval; rows plus raw figures."""
    results: list[dict[str, float]] = []
    with env.demo_store() as store:
        for rep in range(reps):
            r = one_rep(store.url, workdir / f"detect-{rep}", interval, (rep + 0.5) / reps)
            results.append(r)
            print(f"  goal 6 rep {rep + 1}/{reps}: phase {r['phase_s']:.3f} s, min "
                  f"{r['minimum_s']:.3f} s, open {r['open_s']:.3f} s, ticket "
                  f"{r['ticket_s']:.3f} s", file=log)  # type: ignore[call-overload]
    over_open = [r["open_s"] - r["minimum_s"] for r in results]
    over_ticket = [r["ticket_s"] - r["minimum_s"] for r in results]
    mins = [r["minimum_s"] for r in results]
    setup = (f"interval {interval:g} s x L1 confirmations {CONFIRMATIONS}, {reps} reps, phases "
             f"{min(r['phase_s'] for r in results):.2f}-{max(r['phase_s'] for r in results):.2f}"
             " s")
    rows = [
        Row("6", f"detection latency, fault on → ticket stored (sqlite sink), real "
                 f"`storewatch run`; {setup}",
            f"{median([r['ticket_s'] for r in results]):.3f} s (max "
            f"{max(r['ticket_s'] for r in results):.3f})",
            f"theoretical minimum = interval x confirmations - phase (phase: fault time - start "
            f"of the last run before it) {median(mins):.3f} s ({min(mins):.3f}-{max(mins):.3f})",
            f"+{median(over_ticket):.3f} s (max +{max(over_ticket):.3f})",
            "≤ minimum + 1 s", "yes" if max(over_ticket) <= 1.0 else "no"),
        Row("6", "... fault on → incident open",
            f"{median([r['open_s'] for r in results]):.3f} s (max "
            f"{max(r['open_s'] for r in results):.3f})", "same minimum",
            f"+{median(over_open):.3f} s (max +{max(over_open):.3f})", "≤ minimum + 1 s",
            "yes" if max(over_open) <= 1.0 else "no"),
    ]
    return rows, {"reps": results}
