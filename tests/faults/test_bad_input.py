"""Broken configs through the real CLI (``validate`` and ``check`` subprocesses): one line per
problem on stderr, each naming the file, exit 2, never a traceback."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import storewatch
from tests.faults.broken_configs import CORPUS, EXPECTED_LINES

COMMANDS = (("validate",), ("check", "--json"))
CLEAN_ENV = {"CREDENTIALS_DIRECTORY": ""}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[
        Path, int, str, str]]:
    """Every corpus entry through every command, two subprocesses at a time."""
    d = tmp_path_factory.mktemp("broken")
    jobs = []
    for name, content, env in CORPUS:
        path = d / f"{name}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        for command in COMMANDS:
            jobs.append((name, path, command, {**CLEAN_ENV, **env}))

    def run(job: tuple[str, Path, tuple[str, ...], dict[str, str]]) -> tuple[
            tuple[str, str], tuple[Path, int, str, str]]:
        name, path, command, env = job
        proc = storewatch(*command, "-c", str(path), env=env)
        return (name, command[0]), (path, proc.returncode, proc.stdout, proc.stderr)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, jobs))


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
@pytest.mark.parametrize("name", [c[0] for c in CORPUS])
def test_broken_config_is_one_line_per_problem_and_exit_2(
        outcomes: dict[tuple[str, str], tuple[Path, int, str, str]], name: str,
        command: str) -> None:
    path, returncode, stdout, stderr = outcomes[(name, command)]
    assert "Traceback" not in stderr
    assert returncode == 2, stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines, stderr
    if name in EXPECTED_LINES:
        assert len(lines) == EXPECTED_LINES[name], stderr
    assert all(line.startswith(f"storewatch: {path}") for line in lines)


def test_corpus_is_large_and_names_are_unique() -> None:
    names = [c[0] for c in CORPUS]
    assert len(names) == len(set(names)) >= 50


@pytest.mark.parametrize("args", [("validate", "-c", "/nonexistent/storewatch.yaml"),
                                  ("validate", "-c", "/tmp"),
                                  ("check", "-c", "/nonexistent/storewatch.yaml")],
                         ids=["missing-file", "directory", "check-missing-file"])
def test_unreadable_config_path(args: tuple[str, ...]) -> None:
    proc = storewatch(*args)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"storewatch: {args[-1]}: cannot read config")
