"""Ticket text shared by every sink: title, body, update comments and the resolution note.

Everything a tracker receives passes through ``scrub`` (registered secrets become ``***``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime

from agent.config.durations import format_duration
from agent.config.secrets import scrub
from agent.sinks.base import IncidentState, IncidentView
from agent.state.store import IncidentRecord, iso
from classifier import Level, Plan, priority_rank

DASHBOARD_FIELDS = frozenset({"site", "check", "kind", "incident", "fingerprint"})
"""Placeholders a dashboard URL template may use, e.g. ``...?var-site={site}``."""


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What the config says about the incident's site, for the ticket."""

    plan: Plan = Plan.ON_DEMAND
    account_manager: str | None = None
    dashboard_template: str | None = None


def template_fields(template: str) -> set[str]:
    """The placeholders of a ``str.format`` template (ValueError if it is malformed)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def title(level: Level | None, site: str, check: str, summary: str) -> str:
    """``[L1] acme-shop — checkout: add to cart returns HTTP 500``."""
    tag = str(level) if level is not None else "--"
    return scrub(f"[{tag}] {site} — {check}: {summary}")


def dashboard_url(record: IncidentRecord, template: str | None) -> str | None:
    """The dashboard link of an incident from the configured template."""
    if not template:
        return None
    return template.format(site=record.site, check=record.check, kind=record.kind.value,
                           incident=record.id, fingerprint=record.fingerprint)


def seen_from(record: IncidentRecord) -> str | None:
    """``seen from: fra, nyc; not from: sgp`` once more than one location ran the incident's
    checks (None for a single agent)."""
    if len(record.locations) < 2:
        return None
    text = "seen from: " + ", ".join(record.seen_from)
    if record.not_from:
        text += "; not from: " + ", ".join(record.not_from)
    return text


def body(record: IncidentRecord, info: SiteInfo) -> str:
    """Markdown body: level and meaning, evidence, times, count, rule, related findings."""
    level = record.level or Level.L4
    lines = [f"**{level} — {level.title}**: {level.definition}.", "",
             f"**What:** {record.summary}", f"**Site:** {record.site}  **Check:** {record.check}"
             f"  **Kind:** {record.kind.value}", ""]
    where = seen_from(record)
    if where:
        lines[-1:-1] = [f"**Locations:** {where}"]
    ev = record.evidence
    lines.append("**Evidence**")
    if ev.url:
        lines.append(f"- URL: {ev.url}")
    if ev.status is not None:
        lines.append(f"- HTTP status: {ev.status}")
    for name, seconds in ev.timings.items():
        lines.append(f"- {name}: {seconds * 1000:.0f} ms")
    for key, value in ev.details.items():
        lines.append(f"- {key}: {value}")
    if ev.excerpt:
        lines += ["", "```", ev.excerpt, "```"]
    lines += ["", f"**First seen:** {iso(record.first_seen)}  **Last seen:** "
              f"{iso(record.last_seen)}  **Occurrences:** {record.occurrences}",
              f"**Rule:** {record.rule} — {record.reason}"]
    if record.suppressed:
        lines += ["", "**Suppressed related findings** (not ticketed while this is open):"]
        lines += [f"- {s}" for s in record.suppressed]
    if record.causes:
        lines += ["", "**Probable cause** (host findings on the site's server):"]
        lines += [f"- {c}" for c in record.causes]
    lines += ["", f"**Plan:** {info.plan.value}"]
    if info.account_manager:
        lines.append(f"**Account manager:** {info.account_manager}")
    link = dashboard_url(record, info.dashboard_template)
    if link:
        lines.append(f"**Dashboard:** {link}")
    lines += ["", f"storewatch incident #{record.id} · {record.fingerprint}"]
    return scrub("\n".join(lines))


def incident_view(record: IncidentRecord, info: SiteInfo) -> IncidentView:
    """The read-only, rendered and redacted picture of an incident that sinks receive."""
    level = record.level or Level.L4
    return IncidentView(
        id=record.id, fingerprint=record.fingerprint, site=record.site, check=record.check,
        kind=record.kind, level=level, plan=info.plan, priority=priority_rank(level, info.plan),
        state=IncidentState(record.state.value),
        title=title(record.level, record.site, record.check, record.summary),
        body=body(record, info), summary=scrub(record.summary), rule=record.rule,
        reason=record.reason, evidence=record.evidence.redacted(scrub),
        opened_at=record.opened_at or record.first_seen, last_seen=record.last_seen,
        occurrences=record.occurrences, resolved_at=record.resolved_at,
        flapping=record.flapping, suppressed=record.suppressed,
        account_manager=info.account_manager,
        dashboard_url=dashboard_url(record, info.dashboard_template))


def resolution_text(incident: IncidentView, now: datetime | None = None) -> str:
    """``Recovered at 2026-01-01T10:04:00Z after 4m (opened 2026-01-01T10:00:00Z).``"""
    end = incident.resolved_at or now
    if end is None:
        return "Resolved."
    duration = format_duration(max(0.0, (end - incident.opened_at).total_seconds()))
    return (f"Recovered at {iso(end)} after {duration} (opened {iso(incident.opened_at)}, "
            f"{incident.occurrences} failing runs).")
