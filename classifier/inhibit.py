"""Inhibition: which findings an active incident of the same site makes redundant. Pure.

A cause inhibits its consequences inside one site: while the site is down, a failing checkout or
an empty catalog is what a shopper cannot see anyway; while the checkout is broken, "no payment
method" and "shipping estimate fails" are parts of that one problem. An inhibited finding is
recorded on the inhibiting incident (``related``), and its own incident gets no ticket.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

from classifier.kinds import FindingKind

K = FindingKind

INHIBITED_BY_SITE_DOWN: frozenset[FindingKind] = frozenset({
    K.CHECKOUT_BROKEN, K.PAYMENT_UNAVAILABLE, K.CATALOG_MISSING, K.SEARCH_BROKEN,
    K.FILTER_BROKEN, K.PAGE_CORRUPTED, K.PARTIAL_OUTAGE, K.MINOR_FEATURE_BROKEN,
    K.SLOW_RESPONSE, K.BUSINESS_LOGIC_DEGRADED,
})
"""What a shopper cannot see anyway while the site is down: consequences, not causes."""

INHIBITS: Mapping[FindingKind, frozenset[FindingKind]] = {
    K.SITE_DOWN: INHIBITED_BY_SITE_DOWN,
    K.CHECKOUT_BROKEN: frozenset({K.PAYMENT_UNAVAILABLE, K.BUSINESS_LOGIC_DEGRADED}),
}
"""Cause kind -> the kinds it makes consequences inside the same site (first match wins, in
this order: a down site before a broken checkout)."""

HOST_KINDS: frozenset[FindingKind] = frozenset({
    K.SERVICE_DOWN, K.RESOURCE_PRESSURE, K.EMAIL_NOT_SENT,
})
"""Findings about a site's server: probable causes of a storefront incident."""


class Relation(StrEnum):
    """How a finding relates to the site's other active incidents."""

    OWN = "own"
    """An incident of its own, with a ticket."""
    SUPPRESSED = "suppressed"
    """Recorded on the inhibiting incident (site down, checkout broken); its own incident is
    kept without a ticket."""
    CAUSE = "cause"
    """A host finding: attached to the site's open storefront incident as probable cause."""


def inhibitor(kind: FindingKind, active_site_kinds: Collection[FindingKind]) -> FindingKind | None:
    """The kind of the site's active incident that makes ``kind`` a consequence, if any."""
    for cause, consequences in INHIBITS.items():
        if kind in consequences and cause in active_site_kinds:
            return cause
    return None


def relation(kind: FindingKind, active_site_kinds: Collection[FindingKind]) -> Relation:
    """How a finding of ``kind`` is handled given the kinds of the site's active incidents.

    ``active_site_kinds`` are the kinds of the same site's pending or open incidents (other
    than the finding's own).
    """
    if inhibitor(kind, active_site_kinds) is not None:
        return Relation.SUPPRESSED
    if kind in HOST_KINDS and any(k not in HOST_KINDS and k is not K.AGENT_OFFLINE
                                  for k in active_site_kinds):
        return Relation.CAUSE
    return Relation.OWN
