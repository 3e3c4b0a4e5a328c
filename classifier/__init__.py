"""Pure, I/O-free decisions of storewatch: finding kinds, levels, rules and classification.

Imports only the standard library (a test enforces it); no clock, no I/O, no globals.
"""

from classifier.classify import Decision, SiteContext, classify
from classifier.finding import Evidence, Finding
from classifier.kinds import FindingKind
from classifier.levels import Level, Plan, priority_rank
from classifier.rules import DEFAULT_RULES, Condition, Op, Rule, with_overrides

__all__ = [
    "DEFAULT_RULES",
    "Condition",
    "Decision",
    "Evidence",
    "Finding",
    "FindingKind",
    "Level",
    "Op",
    "Plan",
    "Rule",
    "SiteContext",
    "classify",
    "priority_rank",
    "with_overrides",
]
