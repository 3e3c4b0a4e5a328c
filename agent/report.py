"""What people and scripts read: finding lines, the `check` table and JSON, change tracking."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.config.secrets import scrub
from agent.pipeline import Classified, Observation


def finding_line(item: Classified) -> str:
    """``L1 site_down  shop/home: home page unreachable: …`` (secrets scrubbed)."""
    f, d = item.finding, item.decision
    level = str(d.level) if d.level is not None else "--"
    return scrub(f"{level} {f.kind.value:<22} {f.site}/{f.check}: {f.summary}")


def observation_json(obs: Observation) -> dict[str, Any]:
    """One result of ``check --json``: site, check, success, duration, steps, findings."""
    r = obs.result
    return {
        "site": r.site,
        "check": r.check,
        "success": r.success,
        "duration_seconds": round(r.duration_s, 6),
        "started_at": r.started_at.isoformat(),
        "steps": {s.name: round(s.seconds, 6) for s in r.steps},
        "measurements": dict(r.measurements),
        "findings": [
            {
                "kind": c.finding.kind.value,
                "level": c.decision.level.value if c.decision.level is not None else None,
                "rule": c.decision.rule,
                "reason": c.decision.reason,
                "priority": c.decision.priority,
                "summary": scrub(c.finding.summary),
                "evidence": c.finding.evidence.redacted(scrub).as_dict(),
            }
            for c in obs.classified
        ],
    }


def results_table(observations: Iterable[Observation]) -> str:
    """A plain-text table of results and their findings, for people."""
    rows = [("SITE", "CHECK", "RESULT", "TIME", "FINDINGS")]
    for obs in observations:
        r = obs.result
        levels = sorted(str(c.decision.level) for c in obs.classified
                        if c.decision.level is not None)
        rows.append((r.site, r.check, "ok" if r.success else "FAIL", f"{r.duration_s:.3f}s",
                     ", ".join(levels) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    details = [f"  {finding_line(c)}" for obs in observations for c in obs.classified]
    return "\n".join([*lines, "", *details] if details else lines)


@dataclass(frozen=True, slots=True)
class Change:
    """A finding that appeared (``item`` set) or cleared (``item`` None) for a check."""

    key: tuple[str, str, str]
    item: Classified | None

    def line(self) -> str:
        """Human line for logs and the demo."""
        if self.item is not None:
            return "+ " + finding_line(self.item)
        site, check, kind = self.key
        return f"- cleared {kind} {site}/{check}"


class ChangeTracker:
    """Reports findings when they appear and when they clear, not on every run."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], set[str]] = {}

    def update(self, obs: Observation) -> Iterator[Change]:
        """Changes for ``obs`` against the check's previous observation."""
        r = obs.result
        before = self._active.get((r.site, r.check), set())
        now = {c.finding.kind.value: c for c in obs.classified}
        for kind, item in now.items():
            if kind not in before:
                yield Change((r.site, r.check, kind), item)
        for kind in sorted(before - set(now)):
            yield Change((r.site, r.check, kind), None)
        self._active[(r.site, r.check)] = set(now)
