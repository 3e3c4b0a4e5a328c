"""Run the real CLI in a subprocess and measure its peak memory (``wait4`` rusage: exact, not
sampled, so a short spike while decoding a bomb is not missed).

Linux carries a parent's high-water RSS over fork and exec into the child's ``ru_maxrss``, so
the CLI is started by a minimal wrapper (``python -S``, a few MiB) that reports its child's
figure; measured straight from the test process, the figure would be the test's own size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from tests.conftest import ROOT

_WRAPPER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


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
    """``python -m agent ARGS`` (killed with its wrapper after ``timeout`` s) with its peak RSS
    and wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _WRAPPER, rss.name, sys.executable,
                                 "-m", "agent", *args], stdout=out, stderr=err,
                                env={**os.environ, **(env or {})}, cwd=ROOT,
                                start_new_session=True)
        killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            proc.wait()
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(), err.read().decode(),
                        int(rss.read() or 0) * 1024, wall)
