"""The incident lifecycle as a pure function: ``step(track, run, now, policy) -> (track, events)``.

An incident is pending until enough consecutive failing runs confirm it, then open until enough
consecutive passing runs recover it. Level changes while open escalate or de-escalate it. An
incident whose fingerprint changed state too often within the flapping window is held open and
marked flapping instead of being resolved (and re-opened) again. Runs that may not be ticketed
(suppressed, maintenance, agent offline) still move the lifecycle; a ticket is asked for only
once a run may be ticketed. No clock, no I/O: time comes in as ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from classifier.levels import Level


class Phase(StrEnum):
    """Where an incident is in its lifecycle (``RESOLVED`` also means: no active incident)."""

    PENDING = "pending"
    OPEN = "open"
    RESOLVED = "resolved"


class EventType(StrEnum):
    """What a step did to the incident."""

    STARTED = "started"
    """A new incident, pending confirmation."""
    DISCARDED = "discarded"
    """A pending incident that passed before it was confirmed (never opened)."""
    OPENED = "opened"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    FLAPPING = "flapping"
    REMINDER = "reminder"
    RESOLVED = "resolved"


class TicketOp(StrEnum):
    """What the step asks of the incident's ticket(s)."""

    OPEN = "open"
    UPDATE = "update"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, its text for the history, and the ticket action it needs."""

    type: EventType
    text: str
    ticket: TicketOp | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Confirmation, recovery, flapping and reminder settings of one check."""

    confirm: int | None = None
    """Consecutive failing runs to open, whatever the level (a per-check override)."""
    confirm_l1: int = 2
    """Consecutive failing runs to open an L1 incident (when ``confirm`` is None)."""
    confirm_other: int = 3
    """... an L2-L4 incident (or one without a level)."""
    recover: int = 2
    flap_window: timedelta = timedelta(hours=1)
    flap_changes: int = 4
    """State changes (open/resolve) within ``flap_window`` that make an incident flapping."""
    reminder: timedelta | None = None

    def confirmations(self, level: Level | None) -> int:
        """Failing runs needed to open an incident of ``level``."""
        if self.confirm is not None:
            return self.confirm
        return self.confirm_l1 if level is Level.L1 else self.confirm_other


@dataclass(frozen=True, slots=True)
class Run:
    """One run of one check as seen by one fingerprint: failing (with its level) or passing."""

    check: str
    failing: bool
    level: Level | None = None
    ticketable: bool = True
    """False: record the finding but do not ticket it (suppressed, maintenance, offline)."""
    why_not: str = ""
    """Why the run may not be ticketed, for the history."""


@dataclass(frozen=True, slots=True)
class Track:
    """Lifecycle state of one fingerprint (kept across its incidents for flap counting)."""

    phase: Phase = Phase.RESOLVED
    level: Level | None = None
    fails: int = 0
    passes: int = 0
    sources: frozenset[str] = frozenset()
    """Checks whose latest run failed with this fingerprint."""
    checks: frozenset[str] = frozenset()
    """Every check that failed with this fingerprint during the current incident: their
    passing runs count towards recovery."""
    changes: tuple[datetime, ...] = ()
    """When the fingerprint opened or resolved, within the flapping window."""
    flapping: bool = False
    ticketed: bool = False
    opened_at: datetime | None = None
    last_reminder: datetime | None = None


def step(track: Track, run: Run, now: datetime, policy: Policy) -> tuple[Track, tuple[Event, ...]]:
    """Apply one run to ``track``; return the new state and what happened."""
    changes = tuple(t for t in track.changes if now - t < policy.flap_window)
    track = replace(track, changes=changes)
    if run.failing:
        return _failing(track, run, now, policy)
    return _passing(track, run, now, policy)


def _failing(track: Track, run: Run, now: datetime,
             policy: Policy) -> tuple[Track, tuple[Event, ...]]:
    events: list[Event] = []
    ticketable = run.ticketable and run.level is not None
    sources = track.sources | {run.check}
    if track.phase is Phase.RESOLVED:
        track = Track(phase=Phase.PENDING, level=run.level, fails=1, sources=sources,
                      checks=sources, changes=track.changes)
        events.append(Event(EventType.STARTED, f"first failing run ({run.check})"))
    elif track.phase is Phase.PENDING:
        track = replace(track, level=run.level, fails=track.fails + 1, passes=0, sources=sources,
                        checks=track.checks | sources)
    else:
        track = replace(track, fails=track.fails + 1, passes=0, sources=sources,
                        checks=track.checks | sources)
        events.extend(_level_change(track, run.level))
        if run.level is not None:
            track = replace(track, level=run.level)
        if not track.ticketed and ticketable:
            track = replace(track, ticketed=True)
            events.append(Event(EventType.OPENED, "ticketed now that it is no longer "
                                "suppressed", TicketOp.OPEN))
        elif track.ticketed and policy.reminder is not None:
            since = track.last_reminder or track.opened_at or now
            if now - since >= policy.reminder:
                track = replace(track, last_reminder=now)
                events.append(Event(EventType.REMINDER, f"still failing after {track.fails} runs",
                                    TicketOp.UPDATE))
    if track.phase is Phase.PENDING and track.fails >= policy.confirmations(track.level):
        track = replace(track, phase=Phase.OPEN, opened_at=now, ticketed=ticketable,
                        changes=(*track.changes, now))
        text = f"confirmed after {track.fails} failing runs"
        if ticketable:
            events.append(Event(EventType.OPENED, text, TicketOp.OPEN))
        else:
            events.append(Event(EventType.OPENED, f"{text}; not ticketed: {run.why_not}"))
        if len(track.changes) >= policy.flap_changes and not track.flapping:
            track = replace(track, flapping=True)
            events.append(_flapping_event(track, policy, len(track.changes)))
    return track, tuple(events)


def _level_change(track: Track, level: Level | None) -> list[Event]:
    if level is None or track.level is None or level == track.level:
        return []
    op = TicketOp.UPDATE if track.ticketed else None
    if level < track.level:
        return [Event(EventType.ESCALATED, f"escalated from {track.level} to {level}", op)]
    return [Event(EventType.DEESCALATED, f"de-escalated from {track.level} to {level}", op)]


def _flapping_event(track: Track, policy: Policy, changes: int) -> Event:
    """``changes``: the state changes within the window, counting the one held back."""
    minutes = policy.flap_window.total_seconds() / 60
    return Event(EventType.FLAPPING,
                 f"flapping: {changes} state changes within {minutes:g} min (threshold "
                 f"{policy.flap_changes}); held open until it is stable",
                 TicketOp.UPDATE if track.ticketed else None)


def _passing(track: Track, run: Run, now: datetime,
             policy: Policy) -> tuple[Track, tuple[Event, ...]]:
    sources = track.sources - {run.check}
    if track.phase is Phase.RESOLVED:
        return replace(track, sources=sources, fails=0), ()
    if sources:  # another check still sees the problem
        return replace(track, sources=sources), ()
    if track.phase is Phase.PENDING:
        return (replace(track, phase=Phase.RESOLVED, fails=0, passes=0, sources=sources),
                (Event(EventType.DISCARDED, f"passed before confirmation ({run.check})"),))
    track = replace(track, passes=track.passes + 1, fails=0, sources=sources)
    if track.passes < policy.recover:
        return track, ()
    if len(track.changes) + 1 >= policy.flap_changes:  # this resolve would reach the threshold
        if track.flapping:
            return track, ()
        track = replace(track, flapping=True)
        return track, (_flapping_event(track, policy, len(track.changes) + 1),)
    op = TicketOp.RESOLVE if track.ticketed else None
    resolved = replace(track, phase=Phase.RESOLVED, flapping=False,
                       changes=(*track.changes, now))
    return resolved, (Event(EventType.RESOLVED, f"recovered after {track.passes} passing runs",
                            op),)
