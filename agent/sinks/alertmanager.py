"""Prometheus Alertmanager (API v2): one alert per incident, identified by its label set.

``POST /api/v2/alerts`` with a one-alert array. The labels are stable (alertname, site, check,
kind, severity, incident fingerprint, plus ``labels`` from config); text goes in annotations.
A firing alert carries ``endsAt = now + 4 * resend_interval``: **while an incident is open the
daemon must call ``update`` with a ``REMINDER`` event at least every ``resend_interval``** (see
``PeriodicResend``), else Alertmanager resolves the alert on its own. Resolve sends the same
labels with ``endsAt = now``. Every configured Alertmanager of a cluster gets every alert (the
cluster deduplicates); a delivery counts when one of them accepted it. A level change changes
the ``severity`` label, so the update also ends the label sets of the other levels.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from agent.config.durations import Duration
from agent.errors import PermanentSinkError, RetryableSinkError, SinkError
from agent.sinks.base import (
    Clock,
    EventKind,
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
    utc_now,
)
from agent.sinks.settings import (
    DEFAULT_SEVERITIES,
    HttpUrl,
    LevelKey,
    SinkSettings,
    basic_auth,
    reveal,
    with_defaults,
)
from agent.sinks.transport import TrackerClient, log
from classifier import Level

_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
RESERVED_LABELS = frozenset({"alertname", "site", "check", "kind", "severity", "incident"})


class AlertmanagerConfig(SinkSettings):
    """``type: alertmanager``: one or more Alertmanagers of a cluster; auth is optional."""

    type: Literal["alertmanager"]
    urls: list[HttpUrl] = Field(min_length=1)
    """Base URLs, e.g. ``http://alertmanager-0:9093``; each gets every alert."""
    alertname: str = Field(default="StorewatchIncident", pattern=r"^\S+$")
    labels: dict[Annotated[str, Field(pattern=_LABEL_NAME)], str] = Field(default_factory=dict)
    """Extra static labels (e.g. ``team: shop-ops``); must not change while alerts are open."""
    severities: Annotated[dict[LevelKey, str], AfterValidator(with_defaults(DEFAULT_SEVERITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    resend_interval: Duration = Field(default=60.0, ge=1, le=3600)
    """How often the daemon re-sends an open incident; ``endsAt`` is 4 intervals ahead."""
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None

    @field_validator("labels")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(RESERVED_LABELS & value.keys())
        if clash:
            raise ValueError(f"label '{clash[0]}' is set by storewatch; pick another name")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("use either bearer_token or username/password, not both")
        return self


class AlertmanagerSink:
    """Tickets as Alertmanager alerts."""

    def __init__(self, name: str, config: AlertmanagerConfig, clients: list[TrackerClient],
                 clock: Clock = utc_now) -> None:
        self.name = name
        self.config = config
        self.clients = clients
        self.clock = clock
        self.resend_interval: float = config.resend_interval

    def labels(self, incident: IncidentView, level: Level | None = None) -> dict[str, str]:
        """The alert's identity: stable for the incident at one level."""
        return {**self.config.labels, "alertname": self.config.alertname,
                "site": incident.site, "check": incident.check, "kind": str(incident.kind),
                "severity": self.config.severities[level or incident.level],
                "incident": incident.fingerprint}

    def _alert(self, incident: IncidentView, ends_at: datetime, level: Level | None = None
               ) -> dict[str, Any]:
        annotations = {"summary": incident.title, "description": incident.body,
                       "level": str(level or incident.level), "rule": incident.rule}
        alert: dict[str, Any] = {
            "labels": self.labels(incident, level), "annotations": annotations,
            "startsAt": _rfc3339(incident.opened_at), "endsAt": _rfc3339(ends_at)}
        if incident.dashboard_url:
            alert["generatorURL"] = incident.dashboard_url
        return alert

    async def _post(self, alerts: list[dict[str, Any]], action: str) -> None:
        errors: list[SinkError] = []
        for client in self.clients:
            try:
                await client.request("POST", "/api/v2/alerts", action=action, json=alerts)
            except SinkError as exc:
                errors.append(exc)
        if len(errors) < len(self.clients):
            for error in errors:  # the cluster has the alert; a lagging peer gets it by gossip
                log.warning("%s", error)
            return
        retryable = [e for e in errors if isinstance(e, RetryableSinkError)]
        if retryable:
            raise RetryableSinkError("; ".join(str(e) for e in errors),
                                     retry_after=retryable[0].retry_after)
        raise PermanentSinkError("; ".join(str(e) for e in errors))

    def _firing(self, incident: IncidentView) -> dict[str, Any]:
        return self._alert(incident, self.clock() + timedelta(seconds=4 * self.resend_interval))

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """Not needed: the same labels are the same alert, so a re-sent open is harmless."""
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Fire the alert."""
        await self._post([self._firing(incident)], "fire")
        return TicketRef(self.name, incident.fingerprint)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Re-send the firing alert; on a level change also end the other levels' alerts."""
        alerts = [self._firing(incident)]
        if event.kind in (EventKind.ESCALATED, EventKind.DEESCALATED):
            now = self.clock()
            alerts += [self._alert(incident, now, level) for level in Level
                       if self.config.severities[level] != self.config.severities[
                           incident.level]]
        await self._post(alerts, "re-send")

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Send the same labels with ``endsAt`` now."""
        await self._post([self._alert(incident, self.clock())], "resolve")


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def build(config: AlertmanagerConfig, ctx: SinkBuildContext, clock: Clock = utc_now
          ) -> AlertmanagerSink:
    """The Alertmanager sink for ``config``."""
    headers = {"User-Agent": ctx.user_agent}
    if config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {reveal(config.bearer_token)}"
    elif config.username is not None and config.password is not None:
        headers["Authorization"] = basic_auth(config.username, reveal(config.password))
    clients = [TrackerClient(ctx.http, url, sink=ctx.name, timeout=config.timeout,
                             headers=headers) for url in config.urls]
    return AlertmanagerSink(ctx.name, config, clients, clock)


CONFIG = AlertmanagerConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
