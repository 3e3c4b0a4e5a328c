"""classifier/ stays pure: it imports only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_STDLIB = {"socket", "sqlite3", "subprocess", "asyncio", "time", "random", "os",
                    "urllib", "http", "ssl", "logging", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_classifier_imports_only_stdlib_without_io() -> None:
    files = sorted((ROOT / "classifier").rglob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            if name in {"classifier", "__future__"}:
                continue
            assert name in sys.stdlib_module_names, f"{path.name} imports {name}"
            assert name not in FORBIDDEN_STDLIB, f"{path.name} imports {name} (I/O or clock)"
