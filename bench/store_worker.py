"""One writer of the incident store: ``python -m bench.store_worker LOCATION --worker W``.

Drives the real engine (``IncidentEngine.handle`` on a real ``Store``, SQLite file or
``postgresql://`` URL) with observations of its own ``--sites`` x ``--checks`` checks
(site names carry the worker number, so each writer is an agent with its own share of the
checks). Each check fails (``site_down``, L1) for 5 runs, then passes for 5, in turn, so
incidents open, get outbox entries and resolve, as the doc's single-agent figure measured.
Observations are handled back to back (the store's ceiling, not a schedule). Once its store is
open the worker prints ``ready`` and reads ``START [UNTIL]`` (Unix times) from stdin, so every
writer of a step begins at the same moment however long its start-up took; it runs until UNTIL
or ``--count`` observations. Every transaction's duration and end time is kept, and how long it
waited for and held the writer lock. Prints one JSON line: those lists (end times relative to
START) and the process CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config.schema import Config
from agent.incidents.engine import IncidentEngine
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.state.database import Database
from agent.state.store import Store
from classifier import Evidence, Finding, FindingKind

RUN_LENGTH = 5
"""Runs a check fails, then passes, in turn."""


def site_names(worker: int, sites: int) -> list[str]:
    """The sites of one writer (``shop`` alone for a single one-site writer)."""
    return ["shop"] if sites == 1 and worker == 0 else [f"w{worker}s{i}" for i in range(sites)]


def make_config(state_dir: Path, sites: list[str], checks: int) -> Config:
    """A config naming the writer's sites and checks (the engine reads policies from it)."""
    return Config.model_validate({
        "agent": {"state_dir": str(state_dir)},
        "sites": [{"name": s, "base_url": f"http://{s}.test", "checks": [
            {"name": "home" if j == 0 else f"page{j}", "path": f"/{j}"} for j in range(checks)]}
            for s in sites]})


def observation(classifier: Classifier, site: str, check: str, failing: bool) -> Observation:
    """A classified observation of one run (``site_down`` when ``failing``)."""
    now = datetime.now(UTC)
    findings = (Finding(site, check, FindingKind.SITE_DOWN, f"{check} answered 503", now,
                        Evidence(url=f"http://{site}.test/{check}", status=503), {}),
                ) if failing else ()
    return classifier.observe(ProbeResult(site, check, not failing, 0.1, now,
                                          findings=findings))


class WriterLockTimer:
    """Wraps the backend's ``transaction()``: how long each waited for the writer lock
    (SQLite ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock) and held it (through the commit)."""

    def __init__(self, db: Database) -> None:
        self.waits: list[float] = []
        self.holds: list[float] = []
        self._transaction = db.transaction

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The backend's transaction, timed."""
        t0 = time.perf_counter()
        with self._transaction():
            t1 = time.perf_counter()
            yield
        self.waits.append(t1 - t0)
        self.holds.append(time.perf_counter() - t1)


def drive(location: str, worker: int, sites: int, checks: int, count: int | None,
          state_dir: Path) -> dict[str, Any]:
    """Handle observations back to back from the start time read from stdin; durations, end
    times (s after the start), CPU."""
    config = make_config(state_dir, site_names(worker, sites), checks)
    store = Store(location)
    timer = WriterLockTimer(store.conn)
    store.conn.transaction = timer.transaction  # type: ignore[method-assign]
    engine = IncidentEngine(store, config)
    classifier = Classifier(config)
    pairs = [(s.name, c.name) for s in config.sites for c in s.checks]
    durations: list[float] = []
    ends: list[float] = []
    print("ready", flush=True)
    times = sys.stdin.readline().split()
    start = float(times[0])
    until = float(times[1]) if len(times) > 1 else None
    while time.time() < start:
        time.sleep(min(0.01, max(0.0, start - time.time())))
    cpu0 = time.process_time()
    i = 0
    while (count is None or i < count) and (until is None or time.time() < until):
        site, check = pairs[i % len(pairs)]
        failing = (i // len(pairs)) // RUN_LENGTH % 2 == 0
        obs = observation(classifier, site, check, failing)
        t0 = time.perf_counter()
        engine.handle(obs)
        durations.append(time.perf_counter() - t0)
        ends.append(time.time() - start)
        i += 1
    cpu = time.process_time() - cpu0
    store.close()
    return {"worker": worker, "n": i, "durations": durations, "ends": ends, "cpu_s": cpu,
            "lock_waits": timer.waits, "lock_holds": timer.holds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("location", help="SQLite file or postgresql:// URL")
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--checks", type=int, default=3)
    p.add_argument("--count", type=int, help="observations to handle")
    p.add_argument("--state-dir", type=Path, default=Path("."))
    a = p.parse_args()
    result = drive(a.location, a.worker, a.sites, a.checks, a.count, a.state_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
