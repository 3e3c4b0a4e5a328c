"""A real process to find by command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

MARKER = f"storewatch-test-service-{os.getpid()}"
"""Unique per test run, so concurrent runs on one machine never count each other's process."""


@pytest.fixture
def marked_process() -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping Python process whose command line carries ``MARKER``."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", MARKER])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
