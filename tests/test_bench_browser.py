"""The browser bench's own arithmetic: soak trend and the per-process PSS split."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from bench.browser_worker import PeakPss, process_role, rollup_fields, tree_split
from bench.goal_browser import MIB, rows, split_text, trend


def test_trend_gives_edge_medians_and_slope_per_hour() -> None:
    samples = [(float(t), int((500 + 0.01 * t) * MIB)) for t in range(0, 1500, 4)]
    out = trend(samples, 300.0)
    assert 500 < out["first"] < 503 and 512 < out["last"] < 515
    assert abs(out["slope_mib_h"] - 36.0) < 0.5
    flat = trend([(float(t), 600 * MIB) for t in range(100)], 30.0)
    assert flat["slope_mib_h"] == 0.0 and flat["first"] == flat["last"] == 600


def test_tree_split_counts_this_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cpu: dict[int, tuple[str, float]] = {}
        private = [0]
        split = tree_split(cpu, private)
        assert split["python#"] == 1 and split["python"] > 0
        total = sum(v for k, v in split.items() if not k.endswith("#"))
        assert 0 < private[0] < total  # the interpreter's file pages are not private
        assert split["other#"] >= 1  # the child is not a driver or Chromium process
        assert cpu[child.pid][0] == "other"
    finally:
        child.kill()
        child.wait()
    assert process_role(psutil.Process()) == "python"
    assert split_text({"renderer": 300 * MIB, "renderer#": 2, "gpu": 50 * MIB, "gpu#": 1}) \
        == "renderer 2x 300, gpu 1x 50"


def test_rollup_fields_reads_kilobyte_lines_as_bytes() -> None:
    text = ("55d0c0de0000-7ffc0de00000 ---p 00000000 00:00 0    [rollup]\n"
            "Rss:               12340 kB\nPss:                8000 kB\n"
            "Pss_Anon:           3000 kB\nPss_Shmem:            24 kB\n")
    assert rollup_fields(text) == {"Rss": 12340 * 1024, "Pss": 8000 * 1024,
                                   "Pss_Anon": 3000 * 1024, "Pss_Shmem": 24 * 1024}


def test_sampler_records_private_pss_next_to_pss() -> None:
    sampler = PeakPss(0.02)
    try:
        block = bytearray(64 * MIB)  # touched anonymous memory: private to this tree
        for i in range(0, len(block), 4096):
            block[i] = 1
        wanted = len(sampler.samples) + 2  # a whole sample taken after the block is touched
        deadline = 200
        while len(sampler.samples) < wanted and deadline:
            deadline -= 1
            time.sleep(0.02)
    finally:
        sampler.stop()
    t, pss, private = sampler.samples[-1]
    assert t > 0 and private >= 64 * MIB and pss >= private
    del block


def test_soak_rows_judge_pss_and_private_pss_apart() -> None:
    raw = {"soak_first": 600.0, "soak_last": 700.0, "soak_max": 710.0, "soak_slope_mib_h": 50.0,
           "soak_journeys": 900, "soak_failed": 0, "soak_restarts": {},
           "soak_private_first": 300.0, "soak_private_last": 310.0, "soak_private_max": 320.0,
           "soak_private_slope_mib_h": 1.0}
    found = rows(raw, 60.0, 7200.0, "evershop")
    assert [r.met for r in found] == ["no", "yes"]
