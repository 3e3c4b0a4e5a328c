"""Medians and the table rows the bench prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the Performance table."""

    goal: str
    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    met: str = ""


def median(values: list[float]) -> float:
    """Median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile, nearest rank below (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """``median (min-max)``."""
    if not values:
        return "-"
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def table(rows: list[Row]) -> str:
    """The markdown table."""
    out = ["| goal | figure | value | baseline (same run) | ratio | goal | met |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {r.goal} | {r.figure} | {r.value} | {r.baseline} | {r.ratio} | {r.target} | "
            f"{r.met} |" for r in rows]
    return "\n".join(out)
