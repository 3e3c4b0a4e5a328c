"""Stable incident keys: the same problem of the same site always gets the same fingerprint.

An incident is one problem of one site as the business sees it. By default its key is
``(site, kind)`` for the site-wide and business-impact kinds (every check that sees a broken
checkout feeds the same incident) and ``(site, kind, check)`` for the rest (a slow page, a failing
wishlist, a stopped service: each check's own problem). ``group_by`` (``incidents.group_by``)
changes the keys of the business-impact kinds; site-wide kinds are always one per site.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection

from classifier.kinds import FindingKind

K = FindingKind

SITE_WIDE_KINDS: frozenset[FindingKind] = frozenset({
    K.SITE_DOWN, K.AGENT_OFFLINE, K.SECURITY_BREACH, K.TLS_EXPIRING,
})
"""Kinds that are one problem of the whole site, whichever check saw them."""

BUSINESS_IMPACT_KINDS: frozenset[FindingKind] = frozenset({
    K.CHECKOUT_BROKEN, K.PAYMENT_UNAVAILABLE, K.CATALOG_MISSING, K.SEARCH_BROKEN,
    K.FILTER_BROKEN, K.PAGE_CORRUPTED, K.BUSINESS_LOGIC_DEGRADED,
})
"""Kinds grouped by ``group_by`` (default site + kind): what a shopper cannot do."""

GROUP_KEYS: tuple[str, ...] = ("site", "kind", "check")
"""The keys ``group_by`` may name; ``site`` and ``kind`` are always part of the key."""

DEFAULT_GROUP_BY: tuple[str, ...] = ("site", "kind")


def incident_scope(kind: FindingKind, check: str,
                   group_by: Collection[str] = DEFAULT_GROUP_BY) -> str | None:
    """The check that is part of the key, or None when the incident spans the site's checks."""
    if kind in SITE_WIDE_KINDS:
        return None
    if kind in BUSINESS_IMPACT_KINDS and "check" not in group_by:
        return None
    return check


def fingerprint(site: str, kind: FindingKind, check: str | None) -> str:
    """``storewatch-<12 hex>``: sha256 over the sorted key fields (site, kind, check)."""
    fields = {"site": site, "kind": FindingKind(kind).value}
    if check is not None:
        fields["check"] = check
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return f"storewatch-{digest[:12]}"


def key_of(site: str, kind: FindingKind, check: str,
           group_by: Collection[str] = DEFAULT_GROUP_BY) -> str:
    """Fingerprint of a finding of ``kind`` seen by ``check`` of ``site``."""
    return fingerprint(site, kind, incident_scope(kind, check, group_by))
