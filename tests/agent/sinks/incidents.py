"""A small factory for ``IncidentView`` values in sink tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.sinks.base import EventKind, IncidentState, IncidentView, TicketEvent
from classifier import Evidence, FindingKind, Level, Plan, priority_rank

OPENED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
FINGERPRINT = "storewatch-3f9a1c2b7d10"


def make_incident(**overrides: Any) -> IncidentView:
    """An open L1 checkout incident of ``acme-shop``; keyword arguments replace fields."""
    level = overrides.get("level", Level.L1)
    plan = overrides.get("plan", Plan.SUPPORT_PACKAGE)
    base = IncidentView(
        id=42, fingerprint=FINGERPRINT, site="acme-shop", check="checkout",
        kind=FindingKind.CHECKOUT_BROKEN, level=level, plan=plan,
        priority=priority_rank(level, plan), state=IncidentState.OPEN,
        title=f"[{level}] acme-shop — checkout: add to cart returns HTTP 500",
        body=("Level L1 (emergency): orders or payments impossible.\n\n"
              "Evidence:\n```\nPOST https://acme.example/cart/add -> HTTP 500\n```\n"
              "First seen 2026-03-01 10:00 UTC, 3 failing runs."),
        summary="add to cart returns HTTP 500", rule="checkout-http-5xx",
        reason="checkout step add_to_cart answered 500",
        evidence=Evidence(url="https://acme.example/cart/add", status=500,
                          excerpt="Internal Server Error", timings={"total": 0.25}),
        opened_at=OPENED, last_seen=OPENED + timedelta(minutes=2), occurrences=3,
        account_manager="Dana", dashboard_url="https://grafana.example/d/acme")
    return replace(base, **overrides)


def resolved(incident: IncidentView, after: timedelta = timedelta(minutes=7)) -> IncidentView:
    """``incident`` recovered ``after`` its opening."""
    return replace(incident, state=IncidentState.RESOLVED,
                   resolved_at=incident.opened_at + after)


def escalated(incident: IncidentView, level: Level) -> IncidentView:
    """``incident`` moved to ``level``."""
    return replace(incident, level=level, priority=priority_rank(level, incident.plan),
                   title=incident.title.replace(f"[{incident.level}]", f"[{level}]"))


def event(kind: EventKind = EventKind.REMINDER, text: str = "Still failing at 10:05 UTC",
          at: datetime = OPENED + timedelta(minutes=5)) -> TicketEvent:
    """A ticket event."""
    return TicketEvent(kind, text, at)
