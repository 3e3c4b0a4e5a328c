"""The browser bench's own arithmetic: soak trend and the per-process PSS split."""

from __future__ import annotations

import subprocess
import sys

import psutil

from bench.browser_worker import process_role, tree_split
from bench.goal_browser import MIB, split_text, trend


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
        split = tree_split(cpu)
        assert split["python#"] == 1 and split["python"] > 0
        assert split["other#"] >= 1  # the child is not a driver or Chromium process
        assert cpu[child.pid][0] == "other"
    finally:
        child.kill()
        child.wait()
    assert process_role(psutil.Process()) == "python"
    assert split_text({"renderer": 300 * MIB, "renderer#": 2, "gpu": 50 * MIB, "gpu#": 1}) \
        == "renderer 2x 300, gpu 1x 50"
