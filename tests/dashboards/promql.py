"""Every PromQL expression of dashboards/ (panels, variables) and dashboards/rules/."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "rules"
RULE_FILES = (RULES / "recording.yml", RULES / "alerts.yml")

# What Grafana puts in for its variables when the test evaluates a query.
GRAFANA_VARS = {"$__rate_interval": "15s", "$__range": "1m", "$site": ".*", "$instance": ".*",
                "$job": ".*",
                "$checkout_check": "checkout.*"}


@dataclass(frozen=True)
class Expr:
    """One expression and where it comes from."""

    where: str
    expr: str
    kind: str  # panel | variable | record | alert


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panel_exprs(path: Path) -> list[Expr]:
    doc = json.loads(path.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append(Expr(f"{path.stem} / {panel['title']} [{target['refId']}]",
                            target["expr"], "panel"))
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            out.append(Expr(f"{path.stem} / variable ${var['name']}", var["definition"],
                            "variable"))
    return out


def rule_exprs() -> list[Expr]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    out.append(Expr(f"{path.name} / {rule['record']}", rule["expr"], "record"))
                else:
                    out.append(Expr(f"{path.name} / {rule['alert']}", rule["expr"], "alert"))
    return out


def all_exprs() -> list[Expr]:
    return [e for p in dashboard_files() for e in panel_exprs(p)] + rule_exprs()


def substitute(expr: str) -> str:
    """The query Grafana would send, with the test's variable values."""
    for name, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    return expr


_COMPARISON = re.compile(r"(?<![=!<>])(==|!=|>=|<=|>|<)(?!=)\s*(?!bool\b)")


def data_form(expr: str) -> str:
    """An alert's expression with its threshold turned into ``bool``: one 0/1 series per input
    series, so a healthy system still proves the expression computes over live data.
    ``absent(X)`` becomes ``X``."""
    expr = " ".join(expr.split())
    absent = re.fullmatch(r"absent\((.*)\)", expr)
    if absent:
        return absent.group(1)
    return _COMPARISON.sub(lambda m: f"{m.group(1)} bool ", expr, count=1)


def label_values(expr: str) -> tuple[str, str] | None:
    """``label_values(selector, label)`` → ``(selector, label)``."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip())
    return (m.group(1), m.group(2)) if m else None


def metric_names(text: str) -> set[str]:
    """storewatch_ metric names used in ``text`` (recording rule names excluded)."""
    return set(re.findall(r"(?<![\w:])storewatch_[a-z0-9_]+(?![\w:])", text))


def recorded_names(text: str) -> set[str]:
    """Recording-rule names (``level:metric:operations``) used in ``text``."""
    return set(re.findall(r"\b[a-z_]+:storewatch_[a-z0-9_]+:[a-z0-9_]+\b", text))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
