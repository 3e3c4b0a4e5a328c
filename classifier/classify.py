"""classify(finding, context) -> Decision: the level of one finding and why. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from classifier.finding import Finding
from classifier.kinds import FindingKind
from classifier.levels import Level, Plan, priority_rank
from classifier.rules import DEFAULT_RULES, Rule


@dataclass(frozen=True, slots=True)
class SiteContext:
    """What the classifier knows of the site besides the finding itself."""

    site: str
    plan: Plan = Plan.ON_DEMAND
    level_overrides: Mapping[FindingKind, Level] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The level of a finding (None: not a client incident), the rule that decided, and why."""

    level: Level | None
    rule: str
    reason: str
    priority: int | None = None


def classify(finding: Finding, context: SiteContext,
             rules: Sequence[Rule] = DEFAULT_RULES) -> Decision:
    """Decide the support level of ``finding`` with the first matching rule.

    ``context.level_overrides`` (from the site's config) win over ``rules``; the site's plan
    sets the ticket priority within the level and never changes the level.
    """
    override = context.level_overrides.get(finding.kind)
    if override is not None and finding.kind is not FindingKind.AGENT_OFFLINE:
        return _decide(override, f"override:{finding.kind.value}",
                       f"level set to {override} for site {context.site} in the config", context)
    for rule in rules:
        if rule.matches(finding.kind, finding.facts):
            return _decide(rule.level, rule.id, rule.why, context)
    # Unreachable with DEFAULT_RULES (every kind has a catch-all rule); custom tables may gap.
    return _decide(Level.L4, "fallback", f"no rule for {finding.kind.value}", context)


def _decide(level: Level | None, rule_id: str, why: str, context: SiteContext) -> Decision:
    if level is None:
        return Decision(None, rule_id, f"not a client incident: {why}")
    reason = f"{level} {level.title} ({level.definition}): {why}"
    return Decision(level, rule_id, reason, priority_rank(level, context.plan))
