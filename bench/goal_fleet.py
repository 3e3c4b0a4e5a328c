"""``python -m bench fleet``: a fleet of agents on one PostgreSQL store (issue 15, figures).

One run, one throw-away PostgreSQL cluster (tests/pgcluster.py: loopback, free port, stopped by
PID, ``fsync=off`` as the tests run it), and:

- **F1, agents**: N availability checks at a fixed total rate against the bundled demo store
  (its own process), split over 1 and then 3 real agents (``python -m agent run -c ...``) that
  share one PostgreSQL database. One check per site in ten asks for a page the store does not
  have (404 → an open incident whose track every run updates), the rest pass. After a warm-up,
  each agent's ``/metrics`` is read at the start and end of a window: runs done against runs due
  (``storewatch_probe_runs_total``; due once per interval: the scheduler's jitter delays each
  run within its slot and does not drift) and p99 lateness from
  ``storewatch_scheduler_lateness_seconds`` (the bucket bound the 99th percentile falls in;
  buckets 5, 10, 25, 50, 100, 250 ms ...).
- **F2, writers**: bench/store_worker.py processes drive ``IncidentEngine.handle`` on a real
  ``Store`` back to back; 1, 2, 3, 4, 6, 8 writers (until the rate stops rising by 5 %) on
  PostgreSQL and on a SQLite file. Per step: observations/s, p50/p99 transaction time, the
  database server's CPU seconds per 1,000 observations (the cluster's whole process tree from
  /proc: postmaster, its live backends and the children it reaped) and the writers' own CPU;
  on PostgreSQL also how many writers waited on the advisory writer lock (pg_stat_activity,
  sampled every 20 ms; the sampler's own backend counts in the DB CPU), and in both how long each
  transaction waited for and held the writer lock.
- **F3, SQLite path**: 1,000 observations of one check in a row on SQLite and on PostgreSQL
  (the workload of the doc's single-agent store table), compared with the figure there.

Nothing is pinned (both cores are in use by the database, the writers and the store); figures are
medians and ratios from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import env
from bench.stats import Row, median, percentile, spread, table
from tests.pgcluster import PostgresCluster

DOC_SQLITE_MS = (1.0, 1.8)
"""docs/performance.md, "Incident store": SQLite p50 / p99 of one ``engine.handle``."""
CHECKS_PER_SITE = 10
JITTER = 0.1
"""``agent.jitter`` (the default): a random delay within each run's slot of the interval."""
_SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$', re.M)


@dataclass(frozen=True)
class Sizes:
    """How much the run does (``--quick`` shrinks every part)."""

    checks: int = 600
    interval: float = 10.0
    warmup: float = 15.0
    window: float = 30.0
    writers: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    step_s: float = 15.0
    step_warmup: float = 3.0
    sequential: int = 1000
    sequential_reps: int = 5
    agent_reps: int = 2


QUICK = Sizes(checks=30, interval=1.5, warmup=1.5, window=2.5, writers=(1, 3), step_s=2.0,
              step_warmup=0.5, sequential=100,
              sequential_reps=1, agent_reps=1)


# --- the database's CPU -------------------------------------------------------------------

def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its children: its own, its live children's and those it has
    reaped (cutime + cstime), so backends that came and went are counted."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _stat(pid)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except (OSError, IndexError):
            continue
        if int(child[1]) == pid:
            total += int(child[11]) + int(child[12])
    return total / tick


class LockSampler:
    """Samples pg_stat_activity every 20 ms: writers waiting on the advisory lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "wait_event_type = 'Lock' AND wait_event = 'advisory'"
                                   ).fetchone()
                self.samples.append(int(row[0]) if row else 0)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- F2 / F3: writers on the store ----------------------------------------------------------

def _fresh_database(cluster: PostgresCluster, name: str) -> str:
    import psycopg

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.url(name)


def _writers(location: str, n: int, duration: float, warmup: float, workdir: Path,
             server_pid: int | None, sites: int = 20, checks: int = 3,
             count: int | None = None) -> dict[str, Any]:
    """``n`` store_worker processes from a common start; figures over [start+warmup, end]."""
    from agent.state.store import Store

    Store(location).close()  # the schema exists before the writers race to open it
    procs = [subprocess.Popen([sys.executable, "-m", "bench.store_worker", location,
                               "--worker", str(w), "--sites", str(sites), "--checks",
                               str(checks), "--state-dir", str(workdir),
                               *(["--count", str(count)] if count else [])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for w in range(n)]
    lock = LockSampler(location) if server_pid else None
    cpu0 = cpu1 = 0.0
    t0 = t1 = 0.0
    with contextlib.ExitStack() as stack:
        for proc in procs:  # none left behind if this step fails
            stack.callback(env.stop_process, proc)
        for proc in procs:  # each has its store open: start them together
            assert proc.stdout is not None and proc.stdin is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"fleet bench: a store writer did not start ({location})")
        start = time.time() + 0.2
        until = None if count is not None else start + duration
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start} {until or ''}\n")
            proc.stdin.flush()
        if count is None:
            time.sleep(max(0.0, start + warmup - time.time()))
            if lock is not None:
                stack.enter_context(lock)
            t0, cpu0 = time.time(), tree_cpu_s(server_pid) if server_pid else 0.0
            time.sleep(max(0.0, until - 0.2 - time.time()))  # type: ignore[operator]
            t1, cpu1 = time.time(), tree_cpu_s(server_pid) if server_pid else 0.0
        texts = [p.communicate(timeout=600)[0] for p in procs]  # closes stdin too
    if any(p.returncode for p in procs):
        raise RuntimeError(f"fleet bench: a store writer failed ({location}, exit "
                           f"{[p.returncode for p in procs]})")
    outs = [json.loads(text.strip().splitlines()[-1]) for text in texts]
    if count is not None:  # a fixed number in a row: every observation counts
        durations = [d for o in outs for d in o["durations"]]
        return {"writers": n, "n": len(durations), "p50_ms": percentile(durations, 0.5) * 1000,
                "p99_ms": percentile(durations, 0.99) * 1000}
    lo, hi = t0 - start, t1 - start
    inside = [(d, w, h) for o in outs for d, e, w, h in zip(
        o["durations"], o["ends"], o["lock_waits"], o["lock_holds"], strict=True)
        if lo <= e < hi]
    durations = [d for d, _, _ in inside]
    holds = [h for _, _, h in inside]
    done = len(durations)
    worker_cpu = sum(o["cpu_s"] for o in outs) / max(1, sum(o["n"] for o in outs)) * 1000
    return {"writers": n, "n": done, "window_s": hi - lo, "per_s": done / (hi - lo),
            "p50_ms": percentile(durations, 0.5) * 1000,
            "p99_ms": percentile(durations, 0.99) * 1000,
            "mean_ms": sum(durations) / max(1, done) * 1000,
            "hold_ms": sum(holds) / max(1, done) * 1000,
            "wait_ms": sum(w for _, w, _ in inside) / max(1, done) * 1000,
            # holds of the transactions that ended in the window (one per writer may have begun
            # before it), so capped at the whole window
            "lock_busy": min(1.0, sum(holds) / (hi - lo)),
            "db_cpu_per_1000": (cpu1 - cpu0) / max(1, done) * 1000,
            "db_cpu_share": (cpu1 - cpu0) / (hi - lo),
            "writer_cpu_per_1000": worker_cpu,
            "lock_waiters": (sum(lock.samples) / len(lock.samples)
                             if lock is not None and lock.samples else None)}


def _ramp(location_of: Any, sizes: Sizes, workdir: Path, server_pid: int | None,
          log: Any) -> list[dict[str, Any]]:
    """Steps of ``sizes.writers`` until the rate rises < 5 % (1 and 3 writers always run)."""
    steps: list[dict[str, Any]] = []
    for n in sizes.writers:
        r = _writers(location_of(n), n, sizes.step_s, sizes.step_warmup, workdir, server_pid)
        steps.append(r)
        print(f"  {n} writers: {_step_text(r)}", file=log)
        best = max(s["per_s"] for s in steps[:-1]) if len(steps) > 1 else 0.0
        if n >= 3 and r["per_s"] < best * 1.05:
            break
    return steps


# --- F1: agents -------------------------------------------------------------------------------

def agent_config(path: Path, name: str, store_url: str, state: str, port: int,
                 sites: range, interval: float) -> None:
    """One agent's config: its share of the sites, the shared PostgreSQL store."""
    lines = [f"""\
agent:
  name: {name}
  listen: 127.0.0.1:{port}
  state_dir: {path.parent / name}
  state: {state}
  concurrency: 50
  jitter: {JITTER}
defaults:
  interval: {interval}s
  timeout: {interval / 2:.1f}s
sites:
"""]
    for s in sites:
        lines.append(f"  - name: shop{s}\n    base_url: {store_url}\n    checks:\n")
        for j in range(CHECKS_PER_SITE):
            path_j = "/no-such-page" if j == CHECKS_PER_SITE - 1 else f"/?p={j}"
            lines.append(f"      - name: page{j}\n        path: \"{path_j}\"\n"
                         f"        body_contains: [\"Demo Outfitters\"]\n"
                         if j < CHECKS_PER_SITE - 1 else
                         f"      - name: page{j}\n        path: \"{path_j}\"\n")
    path.write_text("".join(lines))


def scrape(port: int) -> dict[str, float]:
    """The agent's /metrics as ``name{labels}`` → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
        text = res.read().decode()
    return {f"{m.group(1)}{{{m.group(2) or ''}}}": float(m.group(3))
            for m in _SAMPLE.finditer(text)}


def _lateness_buckets(m: dict[str, float]) -> dict[float, float]:
    out: dict[float, float] = {}
    for key, value in m.items():
        if key.startswith("storewatch_scheduler_lateness_seconds_bucket{"):
            le = re.search(r'le="([^"]+)"', key)
            if le:
                out[float(le.group(1))] = value
    return out


def _runs(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("storewatch_probe_runs_total{")
               and 'outcome="skipped"' not in k)


def _lateness_p99(before: list[dict[str, float]], after: list[dict[str, float]]) -> float:
    """Upper bound of the bucket the merged window's 99th percentile falls in."""
    merged: dict[float, float] = {}
    for b, a in zip(before, after, strict=True):
        bb, ab = _lateness_buckets(b), _lateness_buckets(a)
        for le, v in ab.items():
            merged[le] = merged.get(le, 0.0) + v - bb.get(le, 0.0)
    total = merged.get(float("inf"), 0.0)
    for le in sorted(merged):
        if total and merged[le] >= 0.99 * total:
            return le
    return 0.0


@contextlib.contextmanager
def _agents(n: int, sizes: Sizes, store_url: str, state: str,
            workdir: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    sites = sizes.checks // CHECKS_PER_SITE
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for i in range(n):
            config, port = workdir / f"agents{n}-a{i}.yaml", env.free_port()
            agent_config(config, f"agents{n}-a{i}", store_url, state, port,
                         range(i * sites // n, (i + 1) * sites // n), sizes.interval)
            with (workdir / f"agents{n}-a{i}.log").open("wb") as out:
                procs.append((subprocess.Popen([sys.executable, "-m", "agent", "run", "-c",
                                                str(config)], stdout=out, stderr=out), port))
        yield procs
    finally:
        for proc, _ in procs:
            env.stop_process(proc)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fleet bench: agent on port {port} exited {proc.returncode}")
        with contextlib.suppress(OSError):
            scrape(port)
            return
        time.sleep(0.1)
    raise RuntimeError(f"fleet bench: agent on port {port} not ready")


def agents_step(n: int, sizes: Sizes, store_url: str, state: str, server_pid: int,
                workdir: Path) -> dict[str, Any]:
    """``n`` agents sharing ``state``: runs on schedule, p99 lateness, CPU over the window."""
    with _agents(n, sizes, store_url, state, workdir) as procs:
        for proc, port in procs:
            _wait_ready(port, proc)
        time.sleep(sizes.warmup)
        before = [scrape(port) for _, port in procs]
        cpu0 = [env.proc_cpu_s(p.pid) for p, _ in procs]
        db0, t0 = tree_cpu_s(server_pid), time.time()
        time.sleep(sizes.window)
        after = [scrape(port) for _, port in procs]
        db1, t1 = tree_cpu_s(server_pid), time.time()
        cpu1 = [env.proc_cpu_s(p.pid) for p, _ in procs]
    wall = t1 - t0
    runs = sum(_runs(a) - _runs(b) for b, a in zip(before, after, strict=True))
    period = sizes.interval
    due = (sizes.checks // CHECKS_PER_SITE * CHECKS_PER_SITE) / period * wall
    queue = max(a.get("storewatch_incident_queue_length{}", 0.0) for a in after)
    return {"agents": n, "window_s": wall, "runs": runs, "due": due, "on_schedule": runs / due,
            "p99_lateness_s": _lateness_p99(before, after),
            "agent_cpu_share": sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1, strict=True)) / wall,
            "db_cpu_share": (db1 - db0) / wall,
            "db_cpu_per_1000": (db1 - db0) / max(1.0, runs) * 1000, "queue_end": queue}


# --- the run ---------------------------------------------------------------------------------

def run(sizes: Sizes, workdir: Path, log: Any) -> tuple[list[Row], dict[str, Any]]:
    """Every fleet figure in one run; rows plus raw figures."""
    raw: dict[str, Any] = {}
    rows: list[Row] = []
    with PostgresCluster(user="storewatch", database="storewatch") as cluster:
        assert cluster.pid is not None
        pid = cluster.pid
        print("fleet F1: 1 vs 3 agents on one PostgreSQL ...", file=log)
        with env.demo_store() as store:
            agents: list[dict[str, Any]] = []
            for rep in range(sizes.agent_reps):  # 1,3 then 3,1: drifts of the host hit both
                for n in (1, 3) if rep % 2 == 0 else (3, 1):
                    r = agents_step(n, sizes, store.url,
                                    _fresh_database(cluster, f"agents{n}_{rep}"), pid, workdir)
                    agents.append(r)
                    print(f"  {n} agent(s): {r['on_schedule']:.1%} of due runs, p99 lateness "
                          f"<= {r['p99_lateness_s']} s, DB CPU {r['db_cpu_share']:.3f} core",
                          file=log)
        raw["agents"] = agents
        rows += _agent_rows(agents, sizes)

        print("fleet F2: writers on PostgreSQL ...", file=log)
        pg = _ramp(lambda n: _fresh_database(cluster, f"ramp{n}"), sizes, workdir, pid, log)
        print("fleet F2: writers on SQLite ...", file=log)
        sq = _ramp(lambda n: str(workdir / f"ramp{n}.db"), sizes, workdir, None, log)
        print("fleet F3: 1,000 in a row, SQLite vs PostgreSQL ...", file=log)
        seq_sq, seq_pg = [], []
        for rep in range(sizes.sequential_reps):  # alternating, so load drifts hit both
            seq_sq.append(_writers(str(workdir / f"sequential{rep}.db"), 1, 0, 0, workdir, None,
                                   1, 1, count=sizes.sequential))
            seq_pg.append(_writers(_fresh_database(cluster, f"sequential{rep}"), 1, 0, 0,
                                   workdir, None, 1, 1, count=sizes.sequential))
    raw.update(postgresql=pg, sqlite=sq, sequential={"sqlite": seq_sq, "postgresql": seq_pg})
    rows += _writer_rows(pg, sq, seq_sq, seq_pg)
    return rows, raw


def _agent_rows(agents: list[dict[str, Any]], sizes: Sizes) -> list[Row]:
    """F1 rows: medians over the reps of each fleet size."""
    rate = sizes.checks / sizes.interval
    rows: list[Row] = []
    cpu: dict[int, float] = {}
    for n in (1, 3):
        reps = [r for r in agents if r["agents"] == n]

        def med(key: str, reps: list[dict[str, Any]] = reps) -> float:
            return median([r[key] for r in reps])
        cpu[n] = med("agent_cpu_share")
        on_time, late = med("on_schedule"), max(r["p99_lateness_s"] for r in reps)
        rows.append(Row(
            "F1", f"{n} agent{'s' if n > 1 else ''} sharing one PostgreSQL, {sizes.checks} "
            f"checks @ {sizes.interval:g} s ({rate:.0f} checks/s in total, 1 in 10 failing) "
            f"against the demo store; median of {len(reps)} reps",
            f"{on_time:.1%} of due runs ran (min {min(r['on_schedule'] for r in reps):.1%}), "
            f"p99 lateness <= {late:g} s in every rep",
            f"agents' CPU {cpu[n]:.2f} core, DB CPU {med('db_cpu_share'):.3f} core "
            f"({med('db_cpu_per_1000'):.2f} s/1000 obs), incident queue at end "
            f"{max(r['queue_end'] for r in reps):.0f}",
            f"{cpu[3] / cpu[1]:.2f}x agents' CPU vs 1 agent" if n == 3 else "-",
            ">= 95 % on schedule, p99 <= 1 s",
            "yes" if on_time >= 0.95 and late <= 1 else "no"))
    return rows


def _writers_text(r: dict[str, Any]) -> str:
    return f"{r['writers']} writer{'s' if r['writers'] > 1 else ''}"


def _step_text(r: dict[str, Any]) -> str:
    """One ramp step: rate, transaction times, the writer lock, CPU."""
    waiting = ("" if r["lock_waiters"] is None
               else f", {r['lock_waiters']:.2f} writers waiting (pg_stat_activity)")
    db = ("" if r["lock_waiters"] is None
          else f"DB CPU {r['db_cpu_per_1000']:.2f} s/1000 obs, ")
    return (f"{r['per_s']:.0f} obs/s, p50/p99/mean {r['p50_ms']:.1f}/{r['p99_ms']:.1f}/"
            f"{r['mean_ms']:.1f} ms per transaction; writer lock held {r['hold_ms']:.2f} ms per "
            f"obs (busy {r['lock_busy']:.0%} of the time, waits {r['wait_ms']:.1f} ms)"
            f"{waiting}; {db}writers' CPU {r['writer_cpu_per_1000']:.2f} s/1000 obs")


def _writer_rows(pg: list[dict[str, Any]], sq: list[dict[str, Any]],
                 seq_sq: list[dict[str, Any]], seq_pg: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    by_n = {r["writers"]: r for r in pg}
    for n in (1, 3):
        if n in by_n:
            rows.append(Row("F2", f"{_writers_text(by_n[n])} on PostgreSQL (processes), "
                            "engine.handle back to back (DB CPU = the cluster's process tree)",
                            _step_text(by_n[n]),
                            "-", "-", "report", ""))
    top_pg = max(pg, key=lambda r: r["per_s"])
    top_sq = max(sq, key=lambda r: r["per_s"])
    rows.append(Row("F2", f"sustained observations/s of one PostgreSQL (ramp "
                    f"{','.join(str(r['writers']) for r in pg)} writers, best step)",
                    f"{top_pg['per_s']:.0f} obs/s at {_writers_text(top_pg)}; ceiling: "
                    f"the one writer lock, held {top_pg['hold_ms']:.2f} ms per observation "
                    f"(1 / hold = {1000 / top_pg['hold_ms']:.0f} obs/s), busy "
                    f"{top_pg['lock_busy']:.0%}; {max(r['lock_busy'] for r in pg):.0%} at most "
                    "in the ramp",
                    f"SQLite file, same ramp: {top_sq['per_s']:.0f} obs/s at "
                    f"{_writers_text(top_sq)}, lock held {top_sq['hold_ms']:.2f} ms "
                    f"(1 / hold = {1000 / top_sq['hold_ms']:.0f} obs/s)",
                    f"{top_pg['per_s'] / top_sq['per_s']:.2f}x", "report", ""))
    for r in pg:
        rows.append(Row("F2", f"... PostgreSQL, {_writers_text(r)}", _step_text(r), "-",
                        "-", "-", ""))
    for r in sq:
        rows.append(Row("F2", f"... SQLite, {_writers_text(r)}", _step_text(r), "-", "-",
                        "-", ""))
    doc_p50, doc_p99 = DOC_SQLITE_MS
    sq50, sq99 = ([r[k] for r in seq_sq] for k in ("p50_ms", "p99_ms"))
    pg50, pg99 = ([r[k] for r in seq_pg] for k in ("p50_ms", "p99_ms"))
    rows.append(Row("F3", f"SQLite path: {seq_sq[0]['n']:,} observations of one check in a row, "
                    f"engine.handle p50 / p99, median of {len(seq_sq)} reps",
                    f"{spread(sq50, '{:.2f}')} / {spread(sq99, '{:.2f}')} ms",
                    f"docs/performance.md {doc_p50} / {doc_p99} ms; PostgreSQL same run "
                    f"{spread(pg50, '{:.2f}')} / {spread(pg99, '{:.2f}')} ms",
                    f"{median(sq50) / doc_p50:.2f}x / {median(sq99) / doc_p99:.2f}x doc",
                    "within noise", ""))
    return rows


def main(argv: list[str]) -> None:
    """``python -m bench fleet [--quick] [--out FILE]``."""
    p = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: a smoke run of ~40 s (figures meaningless)")
    p.add_argument("--out", type=Path, help="also write the table (and raw JSON next to it)")
    a = p.parse_args(argv)
    sizes = QUICK if a.quick else Sizes()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="storewatch-fleet-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        rows, raw = run(sizes, d, sys.stderr)
    elapsed = time.perf_counter() - started
    load = os.getloadavg()
    text = (table(rows) + "\n\n" + textwrap.fill(
        f"Conditions: {os.cpu_count()} vCPU, nothing pinned, load average {load[0]:.1f} at the "
        f"end; PostgreSQL {_pg_version()} (tests/pgcluster.py, loopback, fsync=off, "
        f"synchronous_commit=off); SQLite on {tempfile.gettempdir()}. Run time "
        f"{elapsed / 60:.1f} min ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
        f"{', --quick' if a.quick else ''}.", 100) + "\n")
    print(text)
    if a.out is not None:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))


def _pg_version() -> str:
    from tests.pgcluster import pg_bindir

    out = subprocess.run([str(pg_bindir() / "postgres"), "--version"], capture_output=True,
                         text=True, timeout=10)
    words = out.stdout.split()
    return words[2] if len(words) > 2 else "?"
