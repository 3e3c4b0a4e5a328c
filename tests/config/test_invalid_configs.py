"""One invalid config per rule, each with its exact one-line message (`# expect:` line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.config.schema import Config
from agent.errors import ConfigError
from tests.conftest import storewatch

TESTDATA = Path(__file__).parent / "testdata"
FIXTURES = sorted(TESTDATA.glob("invalid-*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ").replace("{file}", str(path))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_each_invalid_config_has_its_message(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path, Config, env={})
    assert str(info.value) == expected(path)


def test_there_is_a_fixture_per_rule() -> None:
    assert len(FIXTURES) >= 20


@pytest.mark.parametrize("name", ["invalid-unknown-site-key", "invalid-bad-duration",
                                  "invalid-yaml-syntax"])
def test_validate_command_prints_one_line_and_exits_2(name: str) -> None:
    path = TESTDATA / f"{name}.yaml"
    proc = storewatch("validate", "-c", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"storewatch: {expected(path)}\n"
    assert "Traceback" not in proc.stderr


def also_expected(path: Path) -> list[str]:
    return [line.removeprefix("# also: ").replace("{file}", str(path))
            for line in path.read_text().splitlines() if line.startswith("# also: ")]


def test_validate_lists_every_error_one_line_each() -> None:
    path = TESTDATA / "invalid-three-errors.yaml"
    proc = storewatch("validate", "-c", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"storewatch: {line}" for line in
                                        [expected(path), *also_expected(path)]]
    with pytest.raises(ConfigError) as info:
        load_config(path, Config, env={})
    assert info.value.lines() == [expected(path), *also_expected(path)]


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_list_every_error_too(command: str) -> None:
    path = TESTDATA / "invalid-three-errors.yaml"
    proc = storewatch(command, "-c", str(path))
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 3, proc.stderr


def test_example_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    examples = sorted(root.glob("*.yaml"))
    assert examples
    for path in examples:
        load_config(path, Config, env={"SHOP_API_TOKEN": "x" * 8})


def test_every_field_gets_one_line_in_file_order() -> None:
    from agent.config.loader import load_config_text

    text = """\
sites:
  - name: s
    base_url: https://x.example
    checks:
      - name: c
        type: checkout
        steps:
          - {name: a, path: /, expect: {json: [{path: $.a, equals: [1]}]}}
      - name: d
        timeout: [1]
        max_body_bytes: {a: 1}
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, Config, filename="c.yaml", env={})
    assert info.value.lines() == [
        "c.yaml:8: sites[0].checks[0].steps[0].expect.json[0].equals: Input should be a valid "
        "string, a valid integer, a valid number or a valid boolean",
        "c.yaml:10: sites[0].checks[1].timeout: expected a duration, not a list; use e.g. 30s, "
        "5m, 1h30m",
        "c.yaml:11: sites[0].checks[1].max_body_bytes: could not parse value and unit from byte "
        "string",
    ]
