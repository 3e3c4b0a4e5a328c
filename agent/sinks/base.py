"""The ticket-sink contract: what every tracker adapter implements and receives.

A sink is told about incidents through ``IncidentView`` (a read-only, already-rendered picture of
one incident) and ``TicketEvent`` (something that happened to it). It answers with a
``TicketRef`` (the tracker's id for the ticket) and signals failures only through
``RetryableSinkError`` (5xx, 429, timeouts, network: the outbox retries, honouring
``retry_after``) or ``PermanentSinkError`` (4xx, bad auth or config: a dead letter). Sinks never
log or raise secret values; the outbox owns retries and backoff, not the sink.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError
from classifier import Evidence, FindingKind, Level, Plan


class IncidentState(StrEnum):
    """Lifecycle state of an incident."""

    PENDING = "pending"
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class IncidentView:
    """One incident as a sink sees it: identity, level, text already rendered and redacted."""

    id: int
    """Local incident id (SQLite row id)."""
    fingerprint: str
    """Stable dedup key, e.g. ``storewatch-3f9a1c2b7d10``: written into the tracker (label, tag,
    external id, dedup key, hidden marker) so a ticket can be found again after a crash."""
    site: str
    check: str
    kind: FindingKind
    level: Level
    plan: Plan
    priority: int
    """1 (most urgent) … 8; see ``classifier.priority_rank``."""
    state: IncidentState
    title: str
    """e.g. ``[L1] acme-shop — checkout: add to cart returns HTTP 500``."""
    body: str
    """Plain text / Markdown body: level and meaning, evidence, first/last seen, count, rule."""
    summary: str
    rule: str
    reason: str
    evidence: Evidence
    opened_at: datetime
    last_seen: datetime
    occurrences: int
    resolved_at: datetime | None = None
    flapping: bool = False
    suppressed: tuple[str, ...] = ()
    account_manager: str | None = None
    dashboard_url: str | None = None


class TicketAction(StrEnum):
    """What a sink is asked to do."""

    OPEN = "open"
    UPDATE = "update"
    RESOLVE = "resolve"


class EventKind(StrEnum):
    """Why an update is sent."""

    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    REMINDER = "reminder"
    FLAPPING = "flapping"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """Something that happened to an open incident, to add to its ticket as a comment."""

    kind: EventKind
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TicketRef:
    """The tracker's identity of a ticket, stored on the incident."""

    sink: str
    external_id: str
    url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    """Sink-specific data to keep (e.g. an email thread's first Message-ID)."""


@dataclass(frozen=True, slots=True)
class SinkBuildContext:
    """What a sink factory gets besides its own config section."""

    name: str
    """The sink's name in the config (``sinks: {<name>: {...}}``); becomes ``TicketSink.name``."""
    http_factory: Callable[[], httpx.AsyncClient]
    """Returns the client tracker APIs share (made on first call: sinks that never call it,
    sqlite and email, cost the agent no HTTP pool)."""
    state_dir: Path
    user_agent: str
    evidence_url: str | None = None
    """``incidents.evidence.url``: the agent's public base URL, for links to evidence files."""

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared client for tracker APIs (keep-alive, TLS verified, no cookies)."""
        return self.http_factory()


@runtime_checkable
class TicketSink(Protocol):
    """A tracker adapter. Every method raises only Retryable/PermanentSinkError on failure."""

    name: str

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The open ticket already carrying ``incident.fingerprint``, if the tracker can say."""
        ...

    async def open(self, incident: IncidentView) -> TicketRef:
        """Create the ticket for a newly opened incident."""
        ...

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Add ``event`` to the ticket (a comment; a priority change on escalation)."""
        ...

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Close/resolve the ticket with the recovery time and duration."""
        ...


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Turn a tracker's HTTP answer into nothing (2xx) or the right SinkError.

    5xx, 408, 425 and 429 are retryable (``Retry-After`` in seconds or as an HTTP date is kept);
    every other non-2xx is permanent. The message names ``what`` and the status, and includes
    at most 200 characters of the body (trackers explain 4xx there); never request headers.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    # scrub before cutting: a secret cut in half would no longer be recognised
    body = " ".join(scrub(response.text).split())[:200] if response.content else ""
    message = f"{what}: HTTP {status}" + (f": {body}" if body else "")
    if status >= 500 or status in (408, 425, 429):
        raise RetryableSinkError(message, retry_after=retry_after_seconds(response.headers))
    raise PermanentSinkError(message)


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta or HTTP date), else None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


SinkFactory = Callable[[Any, SinkBuildContext], TicketSink]
"""``build(config, ctx) -> TicketSink``: one per sink module, registered in ``SINKS``."""

Clock = Callable[[], datetime]
"""Returns the current aware UTC time; injected so tests control it."""


def utc_now() -> datetime:
    """The current time, aware, in UTC (the default ``Clock``)."""
    return datetime.now(UTC)


@runtime_checkable
class PeriodicResend(Protocol):
    """A sink whose open tickets expire unless re-sent (Alertmanager).

    While an incident is open the daemon calls ``update(ref, incident, TicketEvent(REMINDER,
    ...))`` at least every ``resend_interval`` seconds; a missed re-send lets the tracker resolve
    the alert on its own after a few intervals.
    """

    resend_interval: float


