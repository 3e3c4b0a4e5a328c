"""Smoke run of the bench workers with tiny sizes against the demo store (no timing asserted)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.demo.storefront import DemoStore
from bench import checkout_worker, goal_detect, probe_worker, scale_worker
from bench.stats import Row, spread, table
from tests.conftest import ROOT


@pytest.mark.parametrize("mode", ["agent", "bare", "raw"], ids=["agent", "bare", "raw"])
async def test_probe_window_counts_every_probe(store: DemoStore, monkeypatch: pytest.MonkeyPatch,
                                               mode: str) -> None:
    monkeypatch.setattr(probe_worker, "MARKER", "Demo Outfitters")
    result = await probe_worker.window(mode, store.url, None, n=12, conc=3, max_s=10,
                                       profile=None)
    assert (result["n"], result["errors"]) == (12, 0)
    assert result["cpu_s"] > 0


async def test_scale_step_records_lateness_of_every_run(store: DemoStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale_worker, "MARKER", "Demo Outfitters")
    result = await scale_worker.step(20, [store.url], interval=1.0, warmup=0.2, window=1.5)
    assert result["checks"] == 20
    assert result["started"] > 0 and result["finished"] > 0
    assert 0 <= result["p50"] <= result["p99"] <= result["max"]
    assert result["failed_checks"] == 0


def test_scrape_worker_exposes_the_same_series_as_direct_client() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.scrape_worker", "5"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["checks"] == 10
    assert result["series"] == result["direct_series"] > 10 * 7
    assert result["scrape_plain_bytes"] == result["bytes"]
    assert result["scrape_gzip_bytes"] == result["gzip_bytes"] < result["bytes"]


def test_table_has_one_line_per_row() -> None:
    text = table([Row("1", "cpu", spread([0.3, 0.1, 0.2]), "b", "1.00x", "<= 1.0x", "yes")])
    assert text.splitlines()[2] == "| 1 | cpu | 0.200 (0.100-0.300) | b | 1.00x | <= 1.0x | yes |"


@pytest.mark.parametrize(("mode", "faults", "failed"), [
    ("agent", [], 0), ("bare", [], 0), ("agent", ["checkout"], 3), ("bare", ["server_error"], 3),
], ids=["agent-healthy", "bare-healthy", "agent-checkout-fault", "bare-server-error"])
async def test_checkout_window_times_every_run_and_counts_failures(
        store: DemoStore, tmp_path: Path, mode: str, faults: list[str], failed: int) -> None:
    store.set_faults(faults)
    result = await checkout_worker.window(mode, store.url, 3, str(tmp_path))
    assert (len(result["cpu_s"]), len(result["wall_s"]), result["errors"]) == (3, 3, failed)
    assert all(c > 0 for c in result["cpu_s"])


async def test_detection_rep_opens_no_earlier_than_the_confirmations_allow(
        store: DemoStore, tmp_path: Path) -> None:
    r = await asyncio.to_thread(goal_detect.one_rep, store.url, tmp_path / "rep", 0.5, 0.5)
    assert 0 <= r["phase_s"] < 0.5
    assert 0 < r["first_seen_s"] <= r["open_s"] <= r["ticket_s"]
    assert r["open_s"] >= r["minimum_s"] - 0.05  # two failing runs, never one
    assert not store.faults  # switched off again


@pytest.mark.slow
def test_fleet_quick_run_measures_agents_and_both_store_paths(tmp_path: Path) -> None:
    """``python -m bench fleet --quick``: a PostgreSQL cluster, 1 and 3 real agents, writers on
    both backends; every figure present and plausible (no timing asserted)."""
    out = tmp_path / "fleet.md"
    subprocess.run([sys.executable, "-m", "bench", "fleet", "--quick", "--out", str(out)],
                   cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    raw = json.loads(out.with_suffix(".json").read_text())
    assert [r["agents"] for r in raw["agents"]] == [1, 3]
    for r in raw["agents"]:
        assert r["runs"] > 0 and r["due"] > 0 and r["p99_lateness_s"] > 0
        assert r["db_cpu_share"] > 0  # the agents' store is the cluster
    for backend in ("postgresql", "sqlite"):
        assert [r["writers"] for r in raw[backend]] == [1, 3]
        for r in raw[backend]:
            assert r["n"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
            assert 0 < r["hold_ms"] <= r["mean_ms"]  # the lock is held inside the transaction
    assert all(r["db_cpu_per_1000"] > 0 for r in raw["postgresql"])
    assert all(r["db_cpu_per_1000"] == 0 for r in raw["sqlite"])  # no server process
    seq = raw["sequential"]
    assert [r["n"] for r in seq["sqlite"]] == [r["n"] for r in seq["postgresql"]] == [100]
    assert "| F3 | SQLite path" in out.read_text()
