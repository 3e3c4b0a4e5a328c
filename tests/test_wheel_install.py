"""The built wheel alone is a working install: a fresh venv without dev extras runs the demo,
validates the shipped example config and writes the server-install files.

Builds from a copy of the tracked sources (a build in the checkout would leave build/ and
*.egg-info behind). pip uses its configured index for the build backend and dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

_SKIP_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                       "__pycache__", ".*_cache")


def SKIP(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: tool output anywhere, and a demo's ``./state`` folder at the
    top (``agent/state`` is a package and is copied)."""
    skipped = set(_SKIP_ANYWHERE(folder, names))
    if Path(folder).resolve() == ROOT.resolve():
        skipped |= {"state"} & set(names)
    return skipped


def run(*args: str | Path, cwd: Path, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOREWATCH_")}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})})


def test_wheel_in_a_fresh_venv_runs_demo_and_validate(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist",
                ".", cwd=src, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("storewatch-*.whl")

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    pip, storewatch = venv / "bin" / "pip", venv / "bin" / "storewatch"
    plain = run(pip, "install", "--quiet", wheel, cwd=tmp_path, timeout=600)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert run(venv / "bin" / "python", "-c", "import aiohttp", cwd=tmp_path).returncode != 0

    # without the demo extra: one line saying what to install, no traceback
    no_extra = run(storewatch, "demo", "--duration", "1", cwd=tmp_path)
    assert (no_extra.returncode, no_extra.stderr) == (
        1, "storewatch: the demo needs the 'demo' extra: pip install 'storewatch[demo]'\n")

    # the server-install files come out of the installed package, not a checkout
    files = run(storewatch, "install-files", tmp_path / "files", cwd=tmp_path)
    assert files.returncode == 0, files.stderr
    example = tmp_path / "files" / "config" / "storewatch.example.yaml"
    for name in ("config/systemd/storewatch.service", "dashboards/rules/alerts.yml",
                 "dashboards/fleet-overview.json", "config/examples/generic.yaml"):
        assert (tmp_path / "files" / name).read_bytes() == (ROOT / name).read_bytes(), name
    valid = run(storewatch, "validate", "-c", example, cwd=tmp_path,
                env={"SHOP_API_TOKEN": "token"})
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith(f"{example}: ok (")

    extra = run(pip, "install", "--quiet", f"{wheel}[demo]", cwd=tmp_path, timeout=600)
    assert extra.returncode == 0, extra.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    demo = run(storewatch, "demo", "--duration", "20", "--store-port", "0", "--listen",
               "127.0.0.1:0", cwd=work, timeout=120)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "fault on: " in demo.stdout and "Traceback" not in demo.stderr
    assert "+ L1 site_down" in demo.stdout
    assert (work / "state").is_dir()  # the bundled demo.yaml's ./state, here in the work dir
