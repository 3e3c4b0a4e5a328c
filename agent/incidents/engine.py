"""The incident engine: applies one classified observation to the store, in one transaction.

Per observation (one run of one check of one site):

1. Each finding gets its fingerprint (``classifier.key_of`` with ``incidents.group_by``): by
   default one incident per (site, kind) for the business-impact kinds, so every check that
   sees a broken checkout feeds the same incident and is listed in its evidence (``checks``);
   while the agent is offline (the connectivity guard says so) failing storefront findings are
   recorded as ``agent_offline``.
2. Its relation to the site's active incidents (``classifier.relation``) decides: its own
   incident, a consequence suppressed under the inhibiting incident (site down, checkout
   broken: recorded there, not ticketed), or a probable cause attached to the site's storefront
   incident.
3. Maintenance windows (config) and silences (``storewatch silence add``) make runs
   not ticketable.
4. ``classifier.step`` moves the fingerprint's lifecycle; its events become history rows and
   outbox entries for the routed sinks, all in the same transaction as the incident change.
5. Fingerprints this check failed before and did not fail now get a passing run.

Fleet: several agents may feed one store. Each run is applied as seen from this agent's
location (``agent.location``, else ``agent.name``): ``classifier.fleet_step`` keeps a lifecycle
per (fingerprint, location) and opens the incident once ``incidents.min_locations`` locations
confirm it (confirmed from fewer: ``unconfirmed``, no ticket); a location counts while its
latest run is within the confirmation window (two intervals of the check plus its budget; its
own location always counts). The incident row lists which locations saw the failure and which
did not; an unconfirmed incident inhibits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from agent.config.schema import Config, plan_check
from agent.config.secrets import scrub
from agent.pipeline import Classified, Observation
from agent.state.store import NOT_SEEN, SEEN, IncidentRecord, Store
from classifier import (
    Event,
    EventType,
    Evidence,
    Finding,
    FindingKind,
    FleetStep,
    Level,
    Phase,
    Policy,
    Relation,
    Run,
    TicketOp,
    Track,
    fleet_step,
    key_of,
    relation,
)
from classifier.inhibit import HOST_KINDS, INHIBITED_BY_SITE_DOWN, inhibitor

log = logging.getLogger(__name__)

MAX_RELATED = 20
"""Suppressed findings / probable causes kept on one incident."""

OFFLINE_WHY = "the agent's own network is down (reference targets unreachable too)"


@dataclass(frozen=True, slots=True)
class Failing:
    """A failing finding as the engine handles it."""

    fingerprint: str
    finding: Finding
    level: Level | None
    rule: str
    reason: str


def policy_for(config: Config, site: str, check: str) -> Policy:
    """The lifecycle policy of one check (``incidents`` settings, per-check overrides)."""
    inc = config.incidents
    override = next((p for p in inc.checks if p.site == site and p.check == check), None)
    return Policy(
        confirm=override.confirm if override is not None else None,
        confirm_l1=inc.confirm_l1, confirm_other=inc.confirm,
        recover=(override.recover if override is not None and override.recover is not None
                 else inc.recover),
        flap_window=timedelta(seconds=inc.flap_window), flap_changes=inc.flap_changes,
        reminder=timedelta(seconds=inc.reminder) if inc.reminder else None)


def route(config: Config, site: str, level: Level | None) -> list[str]:
    """Sinks that get the ticket of an incident of ``site`` at ``level``.

    The first matching route wins; with no match, the ``sqlite`` sink if configured, else every
    configured sink.
    """
    for r in config.routing:
        if r.matches(site, level):
            return list(r.sinks)
    sinks = config.ticket_sinks()
    local = [name for name, s in sinks.items() if s.type == "sqlite"]
    return local or list(sinks)


def maintenance_reason(config: Config, store: Store, site: str, check: str,
                       now: datetime) -> str | None:
    """Why runs of ``site``/``check`` are not ticketed right now (a window or silence)."""
    for w in config.incidents.maintenance:
        if (w.start <= now < w.end and (not w.sites or site in w.sites)
                and (not w.checks or check in w.checks)):
            return f"maintenance: {w.reason} (until {w.end.isoformat()})"
    for s in store.silences(now):
        if (s.site is None or s.site == site) and (s.check is None or s.check == check):
            return f"silenced: {s.reason} (silence #{s.id} until {s.expires_at.isoformat()})"
    return None


class IncidentEngine:
    """Turns observations into incidents, history and outbox entries."""

    def __init__(self, store: Store, config: Config,
                 on_opened: Callable[[IncidentRecord, str | None], None] | None = None,
                 on_resolved: Callable[[IncidentRecord], None] | None = None) -> None:
        self.store = store
        self.config = config
        self._on_opened = on_opened
        self._on_resolved = on_resolved

    def handle(self, obs: Observation, *, online: bool = True,
               now: datetime | None = None) -> None:
        """Apply one observation (``online``: the connectivity guard's verdict)."""
        now = now or datetime.now(UTC)
        site, check = obs.result.site, obs.result.check
        with self.store.transaction():
            failing, seen = self._failing(obs.classified, site, check, online)
            for item in sorted(failing.values(), key=_order):
                self._fail(item, now)
            passing = (set(self.store.tracks_of_check(site, check))
                       | self.store.failing_at(site, self.location, check)) - seen
            for fp in sorted(passing):
                self._apply(fp, site, Run(check, False), None, now)

    @property
    def location(self) -> str:
        """Where this agent's runs are seen from: ``agent.location``, else ``agent.name``."""
        return self.config.agent.location or self.config.agent.name

    def window(self, site: str, check: str) -> timedelta:
        """How long a location's latest run of ``check`` counts: two intervals plus the budget."""
        s = self.config.site(site)
        spec = next((c for c in s.checks if c.name == check), None) if s is not None else None
        if s is None or spec is None:  # host checks, or a check no longer configured
            return timedelta(seconds=2 * self.config.defaults.interval + 60)
        planned = plan_check(self.config, s, spec)
        return timedelta(seconds=2 * planned.interval + planned.timeout)

    def _failing(self, classified: tuple[Classified, ...], site: str, check: str,
                 online: bool) -> tuple[dict[str, Failing], set[str]]:
        failing: dict[str, Failing] = {}
        seen: set[str] = set()
        group_by = self.config.incidents.group_by
        for item in classified:
            f, d = item.finding, item.decision
            fp = key_of(site, f.kind, check, group_by)
            seen.add(fp)
            if not online and f.kind is not FindingKind.AGENT_OFFLINE:
                f = Finding(site, check, FindingKind.AGENT_OFFLINE,
                            f"agent offline while checking: {f.summary}", f.observed_at,
                            f.evidence)
                fp = key_of(site, f.kind, check, group_by)
                seen.add(fp)
                failing.setdefault(fp, Failing(fp, f, None, "agent-offline", OFFLINE_WHY))
                continue
            known = failing.get(fp)
            if known is None or _more_severe(d.level, known.level):
                failing[fp] = Failing(fp, f.redacted(scrub), d.level, d.rule, d.reason)
        return failing, seen

    def _fail(self, item: Failing, now: datetime) -> None:
        site, check = item.finding.site, item.finding.check
        # an unconfirmed incident (fleet: seen from too few locations) inhibits nothing: it
        # must not hide what other locations see
        active = [i for i in self.store.active_incidents(site)
                  if i.fingerprint != item.fingerprint and not i.unconfirmed]
        rel = relation(item.finding.kind, {i.kind for i in active})
        own = self.store.active_incident(item.fingerprint)
        if rel is Relation.CAUSE and own is None:
            self._attach_cause(item, active, now)
            return
        ticketable, why_not = item.level is not None, OFFLINE_WHY if item.level is None else ""
        if rel is Relation.SUPPRESSED:
            cause = inhibitor(item.finding.kind, {i.kind for i in active})
            down = next(i for i in active if i.kind is cause)
            label = "site-down" if cause is FindingKind.SITE_DOWN else str(cause)
            ticketable, why_not = False, f"suppressed by {label} incident #{down.id}"
            self._note_suppressed(down, item)
        if ticketable:
            reason = maintenance_reason(self.config, self.store, site, check, now)
            if reason is not None:
                ticketable, why_not = False, reason
        run = Run(check, True, item.level, ticketable, why_not)
        self._apply(item.fingerprint, site, run, item, now)

    def _apply(self, fp: str, site: str, run: Run, item: Failing | None,
               now: datetime) -> None:
        incident = self.store.active_incident(fp)
        track = self.store.track(fp)
        locations = self.store.location_tracks(fp, now - self.window(site, run.check),
                                               self.location)
        if track.phase is not Phase.RESOLVED and not self.store.has_location_tracks(fp):
            # an incident from before the fleet schema (or the CLI's manual edits): it was this
            # agent's own lifecycle, so it carries on as this location's
            locations = {self.location: track}
        result = fleet_step(track, locations, self.location, run, now,
                            policy_for(self.config, site, run.check),
                            self.config.incidents.min_locations)
        new, events = result.incident, result.events
        incident_id = incident.id if incident is not None else None
        for event in events:
            if event.type is EventType.STARTED and item is not None:
                incident_id = self._create(item, now)
            if incident_id is None:
                continue
            self._record(incident_id, event, new, now)
        if incident_id is not None and item is not None:
            self._refresh(incident_id, item, new, run, now, ticketed_before=track.ticketed)
        elif incident_id is not None:
            self.store.update_incident(incident_id, flapping=new.flapping)
        if incident_id is not None:
            self._note_locations(incident_id, incident, run, result, now)
        self.store.save_location_track(fp, self.location, site, result.location, now)
        self.store.save_track(fp, new)

    def _note_locations(self, incident_id: int, before: IncidentRecord | None, run: Run,
                        result: FleetStep, now: datetime) -> None:
        """Which locations saw the incident's failure (and which did not); whether it is
        confirmed from too few of them (``before``: the incident as the run found it)."""
        if result.incident.phase is Phase.RESOLVED:
            return
        record = before if before is not None else self.store.incident(incident_id)
        if record is None:
            return
        seen = dict(record.locations)
        if run.failing:
            seen[self.location] = SEEN
        else:
            seen.setdefault(self.location, NOT_SEEN)
        unconfirmed = result.unconfirmed
        if unconfirmed and not record.unconfirmed:
            need = self.config.incidents.min_locations
            where = ", ".join(sorted(result.confirmed))
            self.store.add_event(incident_id, now, "unconfirmed",
                                 f"confirmed from {len(result.confirmed)} of the {need} "
                                 f"locations needed ({where}): not ticketed")
        if seen != record.locations or unconfirmed != record.unconfirmed:
            self.store.update_incident(incident_id, locations=seen, unconfirmed=unconfirmed)

    def _create(self, item: Failing, now: datetime) -> int:
        f = item.finding
        return self.store.create_incident(
            fingerprint=item.fingerprint, site=f.site, check=f.check, kind=f.kind,
            level=item.level, now=now, summary=f.summary, rule=item.rule, reason=item.reason,
            evidence=_with_checks(f.evidence, {f.check}))

    def _refresh(self, incident_id: int, item: Failing, track: Track, run: Run,
                 now: datetime, *, ticketed_before: bool) -> None:
        record = self.store.incident(incident_id)
        if record is None or record.state is Phase.RESOLVED:
            return
        f = item.finding
        silenced = None if track.ticketed or run.ticketable else run.why_not
        checks = _seen_by(record.evidence) | {f.check}
        self.store.update_incident(
            incident_id, last_seen=now, occurrences=record.occurrences + 1, summary=f.summary,
            evidence=_with_checks(f.evidence, checks), rule=item.rule, reason=item.reason,
            level=item.level, flapping=track.flapping, silenced=silenced)
        if f.check not in _seen_by(record.evidence):
            text = f"also seen by check {f.check}: {f.summary}"
            self.store.add_event(incident_id, now, "evidence", text)
            if ticketed_before:  # a ticket opened by this run shows every check already
                for sink in self.store.incident_sinks(incident_id):
                    self.store.enqueue(incident_id, sink, "update", now, "note", text)

    def _record(self, incident_id: int, event: Event, track: Track, now: datetime) -> None:
        store = self.store
        store.add_event(incident_id, now, event.type.value, event.text)
        record = store.incident(incident_id)
        if event.type is EventType.OPENED and record is not None and record.state is Phase.PENDING:
            store.update_incident(incident_id, state=Phase.OPEN, opened_at=now)
            if self._on_opened is not None:
                # why it gets no ticket (suppressed, maintenance, offline), None when it does
                why_not = event.text.partition("not ticketed: ")[2] or "not ticketed"
                self._on_opened(record, None if event.ticket is TicketOp.OPEN else why_not)
        elif event.type in (EventType.RESOLVED, EventType.DISCARDED):
            store.update_incident(incident_id, state=Phase.RESOLVED, resolved_at=now,
                                  flapping=False)
            resolved = store.incident(incident_id)
            if (event.type is EventType.RESOLVED and self._on_resolved is not None
                    and resolved is not None):
                self._on_resolved(resolved)
        if event.ticket is None or record is None:
            return
        if event.ticket is TicketOp.OPEN:
            for sink in route(self.config, record.site, track.level):
                store.enqueue(incident_id, sink, "open", now)
            if record.kind is FindingKind.SITE_DOWN:
                self._note_site_down(record, now)
            return
        sinks = store.incident_sinks(incident_id)
        if event.ticket is TicketOp.RESOLVE:
            for sink in sinks:
                store.enqueue(incident_id, sink, "resolve", now)
            return
        for sink in sinks:
            store.enqueue(incident_id, sink, "update", now, event.type.value, event.text)
        if event.type is EventType.ESCALATED:  # a more urgent level may route to more sinks
            for sink in route(self.config, record.site, track.level):
                if sink not in sinks:
                    store.enqueue(incident_id, sink, "open", now)

    def _note_site_down(self, down: IncidentRecord, now: datetime) -> None:
        """Tickets of the site's inhibited incidents learn that the whole site is now down."""
        text = f"The whole site is now down (L1): incident #{down.id}."
        for other in self.store.active_incidents(down.site):
            if other.id == down.id or other.kind not in INHIBITED_BY_SITE_DOWN:
                continue
            self.store.add_event(other.id, now, EventType.ESCALATED.value, text)
            for sink in self.store.incident_sinks(other.id):
                self.store.enqueue(other.id, sink, "update", now, EventType.ESCALATED.value,
                                   text)

    def _note_suppressed(self, down: IncidentRecord, item: Failing) -> None:
        note = f"{item.finding.check}: {item.finding.kind.value}"
        if note not in down.suppressed and len(down.suppressed) < MAX_RELATED:
            self.store.update_incident(down.id, suppressed=(*down.suppressed, note))

    def _attach_cause(self, item: Failing, active: list[IncidentRecord], now: datetime) -> None:
        f = item.finding
        note = f"{f.check}: {f.kind.value} — {f.summary}"
        key = f"{f.check}: {f.kind.value}"
        for incident in active:
            if incident.kind in (FindingKind.AGENT_OFFLINE,) or any(
                    c.startswith(key) for c in incident.causes):
                continue
            if len(incident.causes) >= MAX_RELATED:
                continue
            self.store.update_incident(incident.id, causes=(*incident.causes, note))
            self.store.add_event(incident.id, now, "cause", f"probable cause: {note}")
            for sink in self.store.incident_sinks(incident.id):
                self.store.enqueue(incident.id, sink, "update", now, "note",
                                   f"Probable cause: {note}")


def manual_resolve(store: Store, incident_id: int, now: datetime, who: str = "cli") -> bool:
    """Resolve an incident by hand (``storewatch incidents resolve``); False if not active."""
    with store.transaction():
        record = store.incident(incident_id)
        if record is None or record.state is Phase.RESOLVED:
            return False
        store.update_incident(incident_id, state=Phase.RESOLVED, resolved_at=now,
                              flapping=False)
        store.add_event(incident_id, now, EventType.RESOLVED.value, f"resolved manually ({who})")
        for sink in store.incident_sinks(incident_id):
            store.enqueue(incident_id, sink, "resolve", now)
        track = store.track(record.fingerprint)
        store.save_track(record.fingerprint, Track(changes=track.changes))
        store.forget_locations(record.fingerprint)
    return True


CHECKS_DETAIL = "checks"
"""Evidence detail listing every check that saw the incident's problem."""


def _seen_by(evidence: Evidence) -> set[str]:
    listed = evidence.details.get(CHECKS_DETAIL, "")
    return {c for c in listed.split(", ") if c}


def _with_checks(evidence: Evidence, checks: set[str]) -> Evidence:
    """``evidence`` with the ``checks`` detail first (so the size cap never drops it)."""
    details = {CHECKS_DETAIL: ", ".join(sorted(checks))}
    details.update((k, v) for k, v in evidence.details.items() if k != CHECKS_DETAIL)
    return replace(evidence, details=details)


def _more_severe(a: Level | None, b: Level | None) -> bool:
    return a is not None and (b is None or a < b)


def _order(item: Failing) -> tuple[int, int]:
    """Causes first (site down, then checkout broken: inhibition sees them in the same run),
    host findings last."""
    kind = item.finding.kind
    first = 0 if kind is FindingKind.SITE_DOWN else 1 if kind is FindingKind.CHECKOUT_BROKEN \
        else 3 if kind in HOST_KINDS else 2
    return first, int(item.level or 9)

