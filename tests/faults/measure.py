"""Run the real CLI in a subprocess and measure its peak memory (``wait4`` rusage: exact, not
sampled, so a short spike while decoding a bomb is not missed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from tests.conftest import ROOT


@dataclass(frozen=True)
class Measured:
    """Outcome of one CLI run."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    wall_s: float


def run_measured(*args: str, env: dict[str, str] | None = None,
                 timeout: float = 120) -> Measured:
    """``python -m agent ARGS`` (killed after ``timeout`` s) with its peak RSS and wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "agent", *args], stdout=out, stderr=err,
                                env={**os.environ, **(env or {})}, cwd=ROOT)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(), err.read().decode(),
                        usage.ru_maxrss * 1024, wall)
