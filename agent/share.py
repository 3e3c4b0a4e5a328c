"""The files a server install needs besides the code: unit, example configs, dashboards, rules.

In a checkout they are ``config/`` and ``dashboards/`` at the top; a built wheel carries copies
in ``agent/share/`` (setup.py). ``storewatch install-files DIR`` writes them to a directory.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from agent.errors import StorewatchError

INSTALL_FILES = (
    "config/systemd/storewatch.service",
    "config/storewatch.example.yaml",
    "config/examples/*.yaml",
    "config/demo.yaml",
    "dashboards/*.json",
    "dashboards/rules/*.yml",
)
"""What ``install-files`` writes, relative to the share root (globs)."""


def share_root() -> Path:
    """Where ``config/`` and ``dashboards/`` are: the installed package's copy, else the
    checkout this package runs from (an editable install)."""
    packaged = Path(str(files("agent").joinpath("share")))
    if (packaged / "dashboards").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "dashboards").is_dir():
        return checkout
    raise StorewatchError("the server-install files are missing from this installation "
                          "(neither agent/share/ nor a checkout): reinstall storewatch")


@dataclass(frozen=True, slots=True)
class Written:
    """One file ``install_files`` handled."""

    path: Path
    kept: bool
    """True when it existed and was left alone (no ``--force``)."""


def install_files(dest: Path, *, force: bool = False) -> list[Written]:
    """Copy every file of ``INSTALL_FILES`` under ``dest`` (same layout); existing files are
    kept unless ``force``."""
    root = share_root()
    sources = sorted({p for pattern in INSTALL_FILES for p in root.glob(pattern) if p.is_file()})
    out: list[Written] = []
    try:
        for source in sources:
            target = dest / source.relative_to(root)
            if target.exists() and not force:
                out.append(Written(target, kept=True))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            out.append(Written(target, kept=False))
    except OSError as exc:
        raise StorewatchError(f"cannot write to {dest}: {exc.strerror or exc}") from None
    return out
