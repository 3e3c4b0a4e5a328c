"""Dashboards and rules: bound to the metric catalog, importable, promtool-clean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.metrics import catalog
from tests.dashboards.promql import (
    RULE_FILES,
    RULES,
    all_exprs,
    dashboard_files,
    data_form,
    load_json,
    metric_names,
    recorded_names,
)

KNOWN = {n for m in catalog.ALL for n in catalog.exposed_names(m)}
RECORDED = {r["record"] for g in yaml.safe_load((RULES / "recording.yml").read_text())["groups"]
            for r in g["rules"] if "record" in r}
FILES = [*dashboard_files(), *RULE_FILES]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus")
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    return path


def test_there_are_three_dashboards_and_rules() -> None:
    assert [p.name for p in dashboard_files()] == ["fleet-overview.json", "server.json",
                                                    "site-detail.json"]
    kinds = {e.kind for e in all_exprs()}
    assert kinds == {"panel", "variable", "record", "alert"}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_metric_name_is_in_the_catalog(path: Path) -> None:
    text = path.read_text()
    used = metric_names(text)
    assert used, f"{path.name} uses no storewatch metric"
    assert used <= KNOWN, used - KNOWN
    assert recorded_names(text) <= RECORDED, recorded_names(text) - RECORDED


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_importable_as_is(path: Path) -> None:
    doc = load_json(path)
    assert doc["schemaVersion"] >= 39 and doc["id"] is None and doc["uid"].startswith(
        "storewatch-")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "site" in variables and "job" in variables and "instance" in variables
    assert "__inputs" not in doc  # no import-time prompts: the datasource is a variable
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert len(panel.get("description", "")) > 20, f"{panel['title']}: no description"
        for target in panel["targets"]:  # every agent-side selector honours job and instance
            for selector in re.findall(r"storewatch_\w+(?::\w+)?(?:\{[^}]*\})?", target["expr"]):
                assert 'job=~"$job"' in selector, (panel["title"], selector)
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


@pytest.mark.parametrize(("expr", "expected"), [
    ('up{job="storewatch"} == 0', 'up{job="storewatch"} == bool 0'),
    ("time() - storewatch_x > 600", "time() - storewatch_x > bool 600"),
    ("storewatch_x - time() < 7 * 86400", "storewatch_x - time() < bool 7 * 86400"),
    ('absent(up{job="storewatch"})', 'up{job="storewatch"}'),
    ('storewatch_x{mode=~"a|b"} >= 1', 'storewatch_x{mode=~"a|b"} >= bool 1'),
], ids=["eq", "gt", "lt", "absent", "ge-after-regex-matcher"])
def test_data_form_of_alerts(expr: str, expected: str) -> None:
    assert data_form(expr) == expected


def test_promtool_check_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", *map(str, RULE_FILES)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout and "SUCCESS: 15 rules found" in proc.stdout


def test_every_alert_has_a_runbook_section_in_the_docs() -> None:
    docs = (RULES.parent.parent / "docs" / "metrics.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    base = "https://github.com/storewatch/storewatch/blob/main/docs/metrics.md#"
    for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url == base + rule["alert"].lower(), url
            assert url.removeprefix(base) in anchors, f"docs/metrics.md lacks ### {rule['alert']}"


def test_promtool_test_rules() -> None:
    proc = subprocess.run([promtool(), "test", "rules", "tests.yml"], capture_output=True,
                          text=True, timeout=60, cwd=RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
