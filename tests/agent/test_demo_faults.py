"""Acceptance: every demo fault is caught by `storewatch check -c config/demo.yaml --json` with
the expected kind and level, and nothing at L1-L2 that the fault does not cause.

Real subprocesses: `storewatch demo-store --fault F` on a free port, then the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, storewatch

DEMO_CONFIG = ROOT / "config" / "demo.yaml"


@contextmanager
def demo_store(*faults: str) -> Iterator[str]:
    """A `storewatch demo-store` subprocess; yields its URL."""
    args = [a for f in faults for a in ("--fault", f)]
    with subprocess.Popen([sys.executable, "-m", "agent", "demo-store", "--port", "0", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("demo store listening on "), line
            yield line.split()[4]
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def check_demo(url: str, state_dir: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    proc = storewatch("check", "-c", str(DEMO_CONFIG), "--json", *args,
                      env={"STOREWATCH_DEMO_URL": url, "STOREWATCH_STATE_DIR": str(state_dir)})
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    findings = [{"check": r["check"], **f} for r in doc["results"] for f in r["findings"]]
    return proc.returncode, findings


@pytest.mark.parametrize(("fault", "kind", "level"), [
    pytest.param("checkout", "checkout_broken", 1, id="checkout"),
    pytest.param("payment", "payment_unavailable", 1, id="payment"),
    pytest.param("catalog", "catalog_missing", 2, id="catalog"),
    pytest.param("search", "search_broken", 3, id="search"),
    pytest.param("corrupt", "page_corrupted", 3, id="corrupt"),
    pytest.param("skimmer", "security_breach", 1, id="skimmer"),
    pytest.param("reviews", "minor_feature_broken", 4, id="reviews"),
])
def test_each_demo_fault_is_detected(tmp_path: Path, fault: str, kind: str, level: int) -> None:
    with demo_store(fault) as url:
        code, findings = check_demo(url, tmp_path / "state")
    assert code == 1
    assert {"kind": kind, "level": level} in [{"kind": f["kind"], "level": f["level"]}
                                              for f in findings], findings
    unrelated_urgent = [f for f in findings if f["level"] <= 2 and f["kind"] != kind]
    assert unrelated_urgent == []


def test_healthy_demo_store_has_no_findings(tmp_path: Path) -> None:
    with demo_store() as url:
        code, findings = check_demo(url, tmp_path / "state")
        assert (code, findings) == (0, [])
        # check writes no baselines unless given a state directory explicitly
        assert not (tmp_path / "state" / "baselines.db").exists()
        explicit = tmp_path / "explicit"
        assert check_demo(url, tmp_path / "state", "--state-dir", str(explicit)) == (0, [])
        assert (explicit / "baselines.db").exists()
        # a second run against the learned baselines still agrees
        assert check_demo(url, explicit, "--state-dir", str(explicit)) == (0, [])
