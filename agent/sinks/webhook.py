"""Generic webhook: our JSON event, signed Standard-Webhooks style and with a body HMAC.

Every delivery is ``POST <url>`` with a JSON body (ticket-apis.md §8)::

    {"event_id", "event": "opened|escalated|...|resolved", "incident_key", "status":
     "firing|resolved", "severity", "level", "store", "check", "kind", "title", "summary",
     "started_at", "last_seen", "resolved_at", "occurrences", "details": {...}, "links": [...]}

Headers: ``webhook-id`` (= ``event_id``: the same for every retry of one event, so receivers
deduplicate on it), ``webhook-timestamp`` (unix seconds), ``webhook-signature: v1,<base64
HMAC-SHA256 of "<id>.<timestamp>.<body>">`` and ``X-Storewatch-Signature-256: sha256=<hex
HMAC-SHA256 of the body>``. A secret written ``whsec_<base64>`` is base64-decoded into the key
(the Standard Webhooks convention); any other secret is used as its UTF-8 bytes. The receiver
identifies the incident by ``incident_key``, so a re-sent ``opened`` after a crash is harmless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from agent.config.headers import HeaderMap
from agent.config.secrets import register_secret
from agent.sinks.base import (
    Clock,
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
    utc_now,
)
from agent.sinks.render import resolution_text
from agent.sinks.settings import (
    DEFAULT_SEVERITIES,
    HttpUrl,
    LevelKey,
    Secret,
    SinkSettings,
    reveal,
    with_defaults,
)
from agent.sinks.transport import TrackerClient

SIGNATURE_HEADER = "X-Storewatch-Signature-256"


class WebhookConfig(SinkSettings):
    """``type: webhook``: any HTTPS receiver that verifies the signature."""

    type: Literal["webhook"]
    url: HttpUrl
    secret: Secret
    """HMAC key: ``whsec_<base64>`` or any string of at least 16 characters."""
    severities: Annotated[dict[LevelKey, str], AfterValidator(with_defaults(DEFAULT_SEVERITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    headers: HeaderMap = Field(default_factory=dict)
    """Extra request headers (values may use ``${cred:...}``). Their values are treated as
    secrets (they usually carry a receiver's credentials): masked wherever text is scrubbed."""

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, value: Any) -> Any:
        raw = value.get_secret_value()
        if raw.startswith("whsec_"):
            try:
                base64.b64decode(raw[6:], validate=True)
            except binascii.Error:
                raise ValueError("a secret starting with whsec_ must continue in base64") from None
        elif len(raw) < 16:
            raise ValueError("use at least 16 characters (or whsec_<base64>)")
        return value


def signing_key(secret: str) -> bytes:
    """The HMAC key for ``secret`` (``whsec_`` secrets are base64)."""
    return base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers of one delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    standard = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{standard}",
            SIGNATURE_HEADER: "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


class WebhookSink:
    """Tickets as signed webhook events."""

    def __init__(self, name: str, config: WebhookConfig, http: TrackerClient, key: bytes,
                 clock: Clock = utc_now) -> None:
        self.name = name
        self.config = config
        self.http = http
        self._key = key
        self.clock = clock

    def payload(self, incident: IncidentView, event: str, note: str | None,
                at: datetime) -> dict[str, Any]:
        """The JSON event; ``event_id`` is derived from what it reports (stable on retry)."""
        event_id = "msg_" + hashlib.sha256(
            f"{incident.fingerprint}|{incident.id}|{event}|{_iso(at)}".encode()).hexdigest()[:32]
        details: dict[str, Any] = {
            "body": incident.body, "rule": incident.rule, "reason": incident.reason,
            "plan": str(incident.plan), "priority": incident.priority,
            "flapping": incident.flapping, "suppressed": list(incident.suppressed),
            "evidence": incident.evidence.as_dict()}
        if incident.account_manager:
            details["account_manager"] = incident.account_manager
        if note:
            details["note"] = note
        return {
            "event_id": event_id, "event": event, "incident_key": incident.fingerprint,
            "incident_id": incident.id,
            "status": "resolved" if event == "resolved" else "firing",
            "severity": self.config.severities[incident.level], "level": str(incident.level),
            "store": incident.site, "check": incident.check, "kind": str(incident.kind),
            "title": incident.title, "summary": incident.summary,
            "started_at": _iso(incident.opened_at), "last_seen": _iso(incident.last_seen),
            "resolved_at": _iso(incident.resolved_at), "occurrences": incident.occurrences,
            "details": details,
            "links": ([{"href": incident.dashboard_url, "text": "Dashboard"}]
                      if incident.dashboard_url else []),
        }

    async def _deliver(self, payload: Mapping[str, Any], action: str) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {**self.config.headers, "Content-Type": "application/json",
                   **sign(self._key, str(payload["event_id"]),
                          int(self.clock().timestamp()), body)}
        await self.http.request("POST", self.config.url, action=action, content=body,
                                headers=headers)

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """A webhook cannot be asked; receivers deduplicate on ``incident_key``."""
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Send ``opened``."""
        await self._deliver(self.payload(incident, "opened", None, incident.opened_at),
                            "send opened")
        return TicketRef(self.name, incident.fingerprint)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Send the event (``escalated``, ``reminder``, ...) with its text as ``details.note``."""
        await self._deliver(self.payload(incident, str(event.kind), event.text, event.at),
                            f"send {event.kind}")

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Send ``resolved``."""
        at = incident.resolved_at or incident.last_seen
        await self._deliver(self.payload(incident, "resolved", resolution_text(incident), at),
                            "send resolved")


def build(config: WebhookConfig, ctx: SinkBuildContext, clock: Clock = utc_now) -> WebhookSink:
    """The webhook sink for ``config``."""
    secret = reveal(config.secret)
    for value in config.headers.values():
        register_secret(value)  # e.g. an API key from ${VAR} whose name does not look secret
    http = TrackerClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout,
                         headers={"User-Agent": ctx.user_agent})
    return WebhookSink(ctx.name, config, http, signing_key(secret), clock)



CONFIG = WebhookConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
