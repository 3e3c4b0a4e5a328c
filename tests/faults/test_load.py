"""Load: the daemon serves /metrics every second while 500 checks run, within its bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.hostile import hostile_server
from tests.faults.load import CPU_BOUND, LOAD_CHECKS, RSS_BOUND_BYTES, run_load


@pytest.mark.slow
async def test_500_checks_with_a_scraper_every_second(tmp_path: Path) -> None:
    async with hostile_server() as hostile:
        figures = await run_load(hostile, tmp_path)
    print(figures)
    assert figures.failed_scrapes == 0
    assert figures.scrapes >= 10
    assert figures.checks_run == LOAD_CHECKS  # every check ran (5 s interval, 15 s run)
    assert figures.checks_succeeding == LOAD_CHECKS
    assert figures.peak_rss_bytes < RSS_BOUND_BYTES
    assert figures.cpu_share < CPU_BOUND
