"""Build hook only (metadata lives in pyproject.toml): the wheel gets the server-install files.

``dashboards/`` and ``config/`` stay where they are in the checkout (one source); building the
wheel copies them into ``agent/share/``, where ``agent.share`` finds them in an installed
package (``storewatch install-files DIR``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHARED = ("config", "dashboards")


class BuildWithShare(build_py):
    """build_py that also copies the server-install files into the package."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "agent" / "share"
        for name in SHARED:
            shutil.copytree(root / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithShare})
