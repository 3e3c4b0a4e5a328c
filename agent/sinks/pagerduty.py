"""PagerDuty Events API v2: one alert per incident through ``dedup_key``.

``POST /v2/enqueue`` with ``event_action: trigger`` opens (and, re-sent with the same key,
updates) the alert; ``resolve`` with the same ``routing_key`` and ``dedup_key`` closes it. The
key is the incident fingerprint, so a re-sent trigger after a crash lands on the same open
alert: ``find`` is not needed. The integration key travels in the body, never in a header.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, Field, SecretStr, field_validator

from agent.errors import RetryableSinkError
from agent.sinks.base import (
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
)
from agent.sinks.settings import (
    DEFAULT_SEVERITIES,
    HttpUrl,
    LevelKey,
    SinkSettings,
    reveal,
    with_defaults,
)
from agent.sinks.transport import TrackerClient, json_object

Severity = Literal["critical", "error", "warning", "info"]
RATE_LIMIT_WAIT = 30.0
"""PagerDuty's 429 carries no Retry-After; its docs suggest spacing retries ~30 s apart."""


class PagerDutyConfig(SinkSettings):
    """``type: pagerduty``: an Events API v2 integration key (32 characters)."""

    type: Literal["pagerduty"]
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"
    routing_key: SecretStr
    severities: Annotated[dict[LevelKey, Severity],
                          AfterValidator(with_defaults(DEFAULT_SEVERITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_SEVERITIES))  # type: ignore[arg-type]
    client_url: HttpUrl | None = None
    """Shown in PagerDuty as the sender's link (e.g. your dashboard)."""

    @field_validator("routing_key")
    @classmethod
    def _integration_key(cls, value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value())
        if length != 32:
            raise ValueError("must be the 32-character Events API v2 integration key, not "
                             f"{length} characters")
        return value


class PagerDutyClient(TrackerClient):
    """429 without Retry-After still gets a wait."""

    def check(self, response: httpx.Response, what: str) -> None:
        """Default mapping, with ``RATE_LIMIT_WAIT`` when a 429 names no wait."""
        try:
            super().check(response, what)
        except RetryableSinkError as exc:
            if response.status_code == 429 and exc.retry_after is None:
                raise RetryableSinkError(str(exc), retry_after=RATE_LIMIT_WAIT) from None
            raise


class PagerDutySink:
    """Tickets as PagerDuty alerts."""

    def __init__(self, name: str, config: PagerDutyConfig, http: TrackerClient,
                 routing_key: str) -> None:
        self.name = name
        self.config = config
        self.http = http
        self._routing_key = routing_key

    async def _send(self, event: dict[str, Any], action: str) -> str:
        response = await self.http.request("POST", self.config.url, action=action,
                                           json={"routing_key": self._routing_key, **event})
        key = json_object(response, f"{self.name}: {action}").get("dedup_key")
        return str(key or event["dedup_key"])

    def _trigger(self, incident: IncidentView, note: str | None = None) -> dict[str, Any]:
        details: dict[str, Any] = {
            "level": str(incident.level), "kind": str(incident.kind), "rule": incident.rule,
            "reason": incident.reason, "plan": str(incident.plan),
            "occurrences": incident.occurrences, "evidence": incident.evidence.as_dict()}
        if incident.account_manager:
            details["account_manager"] = incident.account_manager
        if note:
            details["update"] = note
        event: dict[str, Any] = {
            "event_action": "trigger", "dedup_key": incident.fingerprint,
            "payload": {
                "summary": incident.title[:1024], "source": incident.site,
                "severity": self.config.severities[incident.level],
                "timestamp": incident.opened_at.isoformat().replace("+00:00", "Z"),
                "component": incident.check, "group": incident.site,
                "class": str(incident.kind), "custom_details": details},
            "client": "storewatch"}
        if self.config.client_url:
            event["client_url"] = self.config.client_url
        if incident.dashboard_url:
            event["links"] = [{"href": incident.dashboard_url, "text": "Dashboard"}]
        return event

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """Not needed: a trigger with the same ``dedup_key`` reaches the same open alert."""
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Trigger the alert."""
        key = await self._send(self._trigger(incident), "trigger")
        return TicketRef(self.name, key)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Re-trigger with the current severity and the event in the details."""
        trigger = self._trigger(incident, note=event.text)
        trigger["dedup_key"] = ref.external_id
        await self._send(trigger, "update")

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Resolve the alert."""
        await self._send({"event_action": "resolve", "dedup_key": ref.external_id}, "resolve")


def build(config: PagerDutyConfig, ctx: SinkBuildContext) -> PagerDutySink:
    """The PagerDuty sink for ``config``."""
    http = PagerDutyClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout,
                           headers={"User-Agent": ctx.user_agent})
    return PagerDutySink(ctx.name, config, http, reveal(config.routing_key))


CONFIG = PagerDutyConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
