"""Inhibition: which findings an open incident of the same site makes redundant. Pure."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from classifier.kinds import FindingKind

K = FindingKind

INHIBITED_BY_SITE_DOWN: frozenset[FindingKind] = frozenset({
    K.CHECKOUT_BROKEN, K.PAYMENT_UNAVAILABLE, K.CATALOG_MISSING, K.SEARCH_BROKEN,
    K.FILTER_BROKEN, K.PAGE_CORRUPTED, K.PARTIAL_OUTAGE, K.MINOR_FEATURE_BROKEN,
    K.SLOW_RESPONSE, K.BUSINESS_LOGIC_DEGRADED,
})
"""What a shopper cannot see anyway while the site is down: consequences, not causes."""

HOST_KINDS: frozenset[FindingKind] = frozenset({
    K.SERVICE_DOWN, K.RESOURCE_PRESSURE, K.EMAIL_NOT_SENT,
})
"""Findings about a site's server: probable causes of a storefront incident."""


class Relation(StrEnum):
    """How a finding relates to the site's other active incidents."""

    OWN = "own"
    """An incident of its own, with a ticket."""
    SUPPRESSED = "suppressed"
    """Recorded on the site-down incident; its own incident is kept without a ticket."""
    CAUSE = "cause"
    """A host finding: attached to the site's open storefront incident as probable cause."""


def relation(kind: FindingKind, active_site_kinds: Collection[FindingKind]) -> Relation:
    """How a finding of ``kind`` is handled given the kinds of the site's active incidents.

    ``active_site_kinds`` are the kinds of the same site's pending or open incidents (other
    than the finding's own).
    """
    if kind in INHIBITED_BY_SITE_DOWN and K.SITE_DOWN in active_site_kinds:
        return Relation.SUPPRESSED
    if kind in HOST_KINDS and any(k not in HOST_KINDS and k is not K.AGENT_OFFLINE
                                  for k in active_site_kinds):
        return Relation.CAUSE
    return Relation.OWN
