"""Classifier defaults, facts-based rules, overrides and plan priority: pure tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from classifier import (
    DEFAULT_RULES,
    Finding,
    FindingKind,
    Level,
    Plan,
    SiteContext,
    classify,
    priority_rank,
    with_overrides,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
K = FindingKind


def finding(kind: FindingKind, **facts: float) -> Finding:
    return Finding("shop", "home", kind, f"{kind} seen", NOW, facts=facts)


DEFAULT_LEVELS = [
    (K.SITE_DOWN, Level.L1),
    (K.CHECKOUT_BROKEN, Level.L1),
    (K.PAYMENT_UNAVAILABLE, Level.L1),
    (K.SECURITY_BREACH, Level.L1),
    (K.PARTIAL_OUTAGE, Level.L2),
    (K.CATALOG_MISSING, Level.L2),
    (K.BUSINESS_LOGIC_DEGRADED, Level.L2),
    (K.EMAIL_NOT_SENT, Level.L2),
    (K.SERVICE_DOWN, Level.L2),
    (K.PAGE_CORRUPTED, Level.L3),
    (K.SEARCH_BROKEN, Level.L3),
    (K.FILTER_BROKEN, Level.L3),
    (K.SLOW_RESPONSE, Level.L3),
    (K.RESOURCE_PRESSURE, Level.L3),
    (K.TLS_EXPIRING, Level.L4),
    (K.MINOR_FEATURE_BROKEN, Level.L4),
]


@pytest.mark.parametrize(("kind", "level"), DEFAULT_LEVELS,
                         ids=[k.value for k, _ in DEFAULT_LEVELS])
def test_default_level_of_each_kind(kind: FindingKind, level: Level) -> None:
    decision = classify(finding(kind), SiteContext("shop"))
    assert decision.level is level
    assert decision.reason.startswith(f"{level} {level.title} (")


def test_every_kind_has_a_default_rule() -> None:
    covered = {rule.kind for rule in DEFAULT_RULES if rule.when is None}
    assert covered == set(FindingKind)


@pytest.mark.parametrize(
    ("kind", "facts", "level", "rule"),
    [
        (K.TLS_EXPIRING, {"days_left": 30.0}, Level.L4, "tls-expiring"),
        (K.TLS_EXPIRING, {"days_left": 7.0}, Level.L2, "tls-expiring-soon"),
        (K.TLS_EXPIRING, {"days_left": 0.5}, Level.L2, "tls-expiring-soon"),
        (K.TLS_EXPIRING, {"days_left": 0.0}, Level.L1, "tls-expired"),
        (K.TLS_EXPIRING, {"days_left": -3.0}, Level.L1, "tls-expired"),
        (K.RESOURCE_PRESSURE, {"critical": 1.0}, Level.L2, "resource-pressure-critical"),
        (K.RESOURCE_PRESSURE, {"critical": 0.0}, Level.L3, "resource-pressure"),
    ],
    ids=["tls-30d", "tls-7d", "tls-12h", "tls-expired-now", "tls-expired", "disk-critical",
         "disk-warn"],
)
def test_fact_dependent_rules(kind: FindingKind, facts: dict[str, float], level: Level,
                              rule: str) -> None:
    decision = classify(finding(kind, **facts), SiteContext("shop"))
    assert (decision.level, decision.rule) == (level, rule)


def test_agent_offline_is_not_a_client_incident() -> None:
    decision = classify(finding(K.AGENT_OFFLINE), SiteContext("shop"))
    assert decision.level is None
    assert decision.priority is None
    assert decision.reason.startswith("not a client incident")


def test_site_override_changes_level_and_names_itself() -> None:
    ctx = SiteContext("shop", level_overrides={K.SLOW_RESPONSE: Level.L2})
    decision = classify(finding(K.SLOW_RESPONSE), ctx)
    assert decision.level is Level.L2
    assert decision.rule == "override:slow_response"
    assert "site shop" in decision.reason


def test_site_override_cannot_make_agent_offline_a_client_incident() -> None:
    ctx = SiteContext("shop", level_overrides={K.AGENT_OFFLINE: Level.L1})
    assert classify(finding(K.AGENT_OFFLINE), ctx).level is None


def test_global_overrides_go_in_front_of_defaults() -> None:
    rules = with_overrides({K.MINOR_FEATURE_BROKEN: Level.L3})
    decision = classify(finding(K.MINOR_FEATURE_BROKEN), SiteContext("shop"), rules)
    assert (decision.level, decision.rule) == (Level.L3, "override:minor_feature_broken")
    # other kinds keep their defaults
    assert classify(finding(K.SITE_DOWN), SiteContext("shop"), rules).level is Level.L1


def test_overriding_agent_offline_is_refused() -> None:
    with pytest.raises(ValueError, match="agent_offline"):
        with_overrides({K.AGENT_OFFLINE: Level.L1})


def test_plan_orders_priority_within_a_level_but_never_across() -> None:
    ranks = [priority_rank(level, plan) for level in Level for plan in Plan]
    assert ranks == sorted(ranks) == list(range(1, 9))
    pkg = classify(finding(K.SEARCH_BROKEN), SiteContext("a", Plan.SUPPORT_PACKAGE))
    ondemand = classify(finding(K.SEARCH_BROKEN), SiteContext("b", Plan.ON_DEMAND))
    assert pkg.level == ondemand.level
    assert pkg.priority is not None and ondemand.priority is not None
    assert pkg.priority < ondemand.priority


def test_classify_is_deterministic() -> None:
    f = finding(K.TLS_EXPIRING, days_left=3)
    assert classify(f, SiteContext("shop")) == classify(f, SiteContext("shop"))
