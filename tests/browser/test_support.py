"""A missing, foreign or unsupported browser is one line at validate/start, never a traceback."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.browser.support import MAX_CHROMIUM_MAJOR, MIN_CHROMIUM_MAJOR, browser_problem
from tests.browser.conftest import CHROMIUM
from tests.conftest import storewatch

CONFIG = """
agent:
  state_dir: {state}
  browser: {{executable_path: {exe}}}
sites:
  - name: shop
    base_url: http://127.0.0.1:9
    checks:
      - name: journey
        type: browser
        steps:
          - {{name: home, goto: /}}
"""


def fake_browser(tmp_path: Path, says: str) -> Path:
    exe = tmp_path / "fake-chromium"
    exe.write_text(f"#!/bin/sh\necho '{says}'\n")
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize(("says", "problem"), [
    pytest.param(None, "browser checks need Chromium at", id="missing"),
    pytest.param("Chromium 90.0.4430.212", "is not supported (supported: major", id="too-old"),
    pytest.param(f"Chromium {MAX_CHROMIUM_MAJOR + 1}.0.1.2", "is not supported", id="too-new"),
    pytest.param("Mozilla Firefox 128.0", "is not Chromium", id="not-chromium"),
])
def test_unusable_browser_is_one_line_at_validate(
        tmp_path: Path, write_config: Callable[..., Path], says: str | None,
        problem: str) -> None:
    exe = tmp_path / "nowhere" / "chromium" if says is None else fake_browser(tmp_path, says)
    config = write_config(CONFIG.format(state=tmp_path / "state", exe=exe))
    for command in ("validate", "check"):
        proc = storewatch(command, "-c", str(config))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"storewatch: {config}: agent.browser: ")
        assert problem in line
        assert "Traceback" not in proc.stderr


def test_debian_chromium_is_in_the_supported_range(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    assert browser_problem(CHROMIUM) is None
    config = write_config(CONFIG.format(state=tmp_path / "state", exe=CHROMIUM))
    proc = storewatch("validate", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert MIN_CHROMIUM_MAJOR <= 156 <= MAX_CHROMIUM_MAJOR
    assert textwrap.dedent("ok") in proc.stdout
