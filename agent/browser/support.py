"""Can browser checks run here? One-line answers for ``validate`` and start-up.

Supported: Debian's ``chromium`` (or any Chromium build) of major version
``MIN_CHROMIUM_MAJOR`` .. ``MAX_CHROMIUM_MAJOR`` driven by Playwright's Python package
(``pip install 'storewatch[browser]'``). storewatch never downloads a browser.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

MIN_CHROMIUM_MAJOR = 120
"""The oldest Chromium the journeys are known to work with (Playwright's CDP needs)."""
MAX_CHROMIUM_MAJOR = 199
"""Newer majors than this are refused until tested (the library-vs-browser drift problem)."""
VERSION_TIMEOUT_S = 15.0
_VERSION = re.compile(r"(?:Chromium|Chrome)\D*(\d+)\.(\d+)\.(\d+)\.(\d+)")


def chromium_version(executable: Path) -> tuple[int, ...] | str:
    """The browser's version, or one line saying why it cannot be used."""
    if not executable.exists():
        return (f"browser checks need Chromium at {executable} (Debian: apt-get install "
                "chromium), or set agent.browser.executable_path")
    if not os.access(executable, os.X_OK):
        return f"{executable} is not executable"
    try:
        out = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                             timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{executable} --version failed: {type(exc).__name__}"
    match = _VERSION.search(out.stdout)
    if match is None:
        first = (out.stdout or out.stderr).strip().splitlines()[:1]
        return f"{executable} is not Chromium (--version said {first[0] if first else 'nothing'!r})"
    return tuple(int(g) for g in match.groups())


def browser_problem(executable: Path) -> str | None:
    """Why browser checks cannot run with ``executable`` (None: they can)."""
    if importlib.util.find_spec("playwright") is None:
        return ("browser checks need Playwright: pip install 'storewatch[browser]' "
                "(it drives the system Chromium; no browser download)")
    version = chromium_version(executable)
    if isinstance(version, str):
        return version
    shown = ".".join(str(v) for v in version)
    if not MIN_CHROMIUM_MAJOR <= version[0] <= MAX_CHROMIUM_MAJOR:
        return (f"Chromium {shown} at {executable} is not supported (supported: major "
                f"{MIN_CHROMIUM_MAJOR}..{MAX_CHROMIUM_MAJOR})")
    return None
