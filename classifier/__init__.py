"""Pure, I/O-free decisions of storewatch: finding kinds, levels, rules and classification.

Imports only the standard library (a test enforces it); no clock, no I/O, no globals.
"""

from classifier.classify import Decision, SiteContext, classify
from classifier.finding import Evidence, Finding
from classifier.fingerprint import fingerprint, incident_scope, key_of
from classifier.fleet import FleetStep, fleet_step
from classifier.inhibit import Relation, relation
from classifier.kinds import FindingKind
from classifier.levels import Level, Plan, priority_rank
from classifier.lifecycle import Event, EventType, Phase, Policy, Run, TicketOp, Track, step
from classifier.rules import DEFAULT_RULES, Condition, Op, Rule, with_overrides

__all__ = [
    "DEFAULT_RULES",
    "Condition",
    "Decision",
    "Event",
    "EventType",
    "Evidence",
    "Finding",
    "FindingKind",
    "FleetStep",
    "Level",
    "Op",
    "Phase",
    "Plan",
    "Policy",
    "Relation",
    "Rule",
    "Run",
    "SiteContext",
    "TicketOp",
    "Track",
    "classify",
    "fingerprint",
    "fleet_step",
    "incident_scope",
    "key_of",
    "priority_rank",
    "relation",
    "step",
    "with_overrides",
]
