"""Stable incident keys: the same problem of the same site always gets the same fingerprint."""

from __future__ import annotations

import hashlib
import json

from classifier.kinds import FindingKind

SITE_WIDE_KINDS: frozenset[FindingKind] = frozenset({
    FindingKind.SITE_DOWN, FindingKind.AGENT_OFFLINE, FindingKind.SECURITY_BREACH,
    FindingKind.TLS_EXPIRING,
})
"""Kinds that are one problem of the whole site, whichever check saw them."""


def incident_scope(kind: FindingKind, check: str) -> str | None:
    """The check that is part of the key, or None for a site-wide kind."""
    return None if kind in SITE_WIDE_KINDS else check


def fingerprint(site: str, kind: FindingKind, check: str | None) -> str:
    """``storewatch-<12 hex>``: sha256 over the sorted key fields (site, kind, check)."""
    fields = {"site": site, "kind": FindingKind(kind).value}
    if check is not None:
        fields["check"] = check
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return f"storewatch-{digest[:12]}"


def key_of(site: str, kind: FindingKind, check: str) -> str:
    """Fingerprint of a finding of ``kind`` seen by ``check`` of ``site``."""
    return fingerprint(site, kind, incident_scope(kind, check))
