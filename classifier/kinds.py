"""The closed vocabulary of finding kinds. Probes must use one of these; config may not add any."""

from __future__ import annotations

from enum import StrEnum


class FindingKind(StrEnum):
    """What kind of problem a probe saw (see DESIGN.md, "Finding kinds")."""

    SITE_DOWN = "site_down"
    CHECKOUT_BROKEN = "checkout_broken"
    PAYMENT_UNAVAILABLE = "payment_unavailable"
    SECURITY_BREACH = "security_breach"
    PARTIAL_OUTAGE = "partial_outage"
    CATALOG_MISSING = "catalog_missing"
    BUSINESS_LOGIC_DEGRADED = "business_logic_degraded"
    EMAIL_NOT_SENT = "email_not_sent"
    SERVICE_DOWN = "service_down"
    PAGE_CORRUPTED = "page_corrupted"
    SEARCH_BROKEN = "search_broken"
    FILTER_BROKEN = "filter_broken"
    SLOW_RESPONSE = "slow_response"
    RESOURCE_PRESSURE = "resource_pressure"
    TLS_EXPIRING = "tls_expiring"
    MINOR_FEATURE_BROKEN = "minor_feature_broken"
    AGENT_OFFLINE = "agent_offline"
