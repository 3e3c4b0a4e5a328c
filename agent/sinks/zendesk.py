"""Zendesk Support: one ticket per incident, with ``external_id`` and a tag for the fingerprint.

Create ``POST /api/v2/tickets`` with an ``Idempotency-Key`` (so a retried create returns the
first ticket); find ``GET /api/v2/tickets?external_id=`` and pick the newest ticket that is not
solved or closed (``external_id`` is not unique); updates are internal comments (plus the
priority on escalation); resolve sets ``status: solved`` with a comment. A browser check's
screenshot and log are uploaded first (``POST /api/v2/uploads?filename=``, raw bytes with
their MIME type, answering a token) and their tokens go into the first comment's ``uploads``;
an upload that fails leaves them out and the comment says where they are on the agent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from agent.errors import PermanentSinkError
from agent.sinks.attachments import Attachment, upload_evidence
from agent.sinks.base import (
    EventKind,
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
)
from agent.sinks.render import resolution_text
from agent.sinks.settings import (
    HttpUrl,
    LevelKey,
    Secret,
    SinkSettings,
    basic_auth,
    reveal,
    with_defaults,
)
from agent.sinks.transport import TrackerClient, json_object
from classifier import Level

ZendeskPriority = Literal["urgent", "high", "normal", "low"]
DEFAULT_PRIORITIES: Mapping[Level, ZendeskPriority] = {
    Level.L1: "urgent", Level.L2: "high", Level.L3: "normal", Level.L4: "low"}
LIVE_STATUSES = frozenset({"new", "open", "pending", "hold"})


class ZendeskConfig(SinkSettings):
    """``type: zendesk``: API token auth (``{email}/token`` : token)."""

    type: Literal["zendesk"]
    url: HttpUrl
    """``https://<subdomain>.zendesk.com``"""
    email: str = Field(min_length=3)
    api_token: Secret
    priorities: Annotated[dict[LevelKey, ZendeskPriority],
                          AfterValidator(with_defaults(DEFAULT_PRIORITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    ticket_type: Literal["problem", "incident", "question", "task"] = "incident"
    tags: list[Annotated[str, Field(pattern=r"^\S{1,80}$")]] = Field(default_factory=list)
    public_comments: bool = False
    """Off: comments are internal notes (no e-mail to the requester)."""


def idempotency_key(incident: IncidentView, ticket: Mapping[str, Any]) -> str:
    """Same incident and same request → same key (a retry returns the first ticket). Zendesk
    rejects a reused key with another body, so the body's digest is part of the key: if the
    text changed between attempts, ``find`` is what prevents a duplicate."""
    digest = hashlib.sha256(json.dumps(ticket, sort_keys=True).encode()).hexdigest()[:16]
    return f"{incident.fingerprint}-{incident.id}-{digest}"


class ZendeskSink:
    """Tickets as Zendesk tickets."""

    def __init__(self, name: str, config: ZendeskConfig, http: TrackerClient,
                 state_dir: Path = Path("."), evidence_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.state_dir = state_dir
        self.evidence_url = evidence_url

    def _ref(self, ticket_id: object) -> TicketRef:
        return TicketRef(self.name, str(ticket_id),
                         url=f"{self.config.url}/agent/tickets/{ticket_id}")

    def _comment(self, text: str) -> dict[str, Any]:
        return {"body": text, "public": self.config.public_comments}

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The newest ticket with the fingerprint as ``external_id`` that is still live."""
        response = await self.http.request("GET", "/api/v2/tickets", action="search tickets",
                                           params={"external_id": incident.fingerprint})
        tickets = json_object(response, f"{self.name}: search tickets").get("tickets") or []
        live = [t for t in tickets if isinstance(t, dict) and t.get("id") is not None
                and t.get("status") in LIVE_STATUSES
                and t.get("external_id") == incident.fingerprint]
        if not live:
            return None
        newest = max(live, key=lambda t: (str(t.get("created_at") or ""), int(t["id"])))
        return self._ref(newest["id"])

    async def open(self, incident: IncidentView) -> TicketRef:
        """Upload the evidence files, then create the ticket with them in its first comment
        (idempotent for retries of the same request)."""
        tokens, note = await self._upload(incident)
        comment = self._comment(incident.body + note)
        if tokens:
            comment["uploads"] = tokens
        ticket = {
            "subject": incident.title,
            "comment": comment,
            "priority": self.config.priorities[incident.level],
            "type": self.config.ticket_type,
            "tags": ["storewatch", incident.fingerprint, *self.config.tags],
            "external_id": incident.fingerprint,
        }
        response = await self.http.request(
            "POST", "/api/v2/tickets", action="create ticket", json={"ticket": ticket},
            headers={"Idempotency-Key": idempotency_key(incident, ticket)})
        created = json_object(response, f"{self.name}: create ticket").get("ticket") or {}
        if not isinstance(created, dict) or created.get("id") is None:
            raise PermanentSinkError(f"{self.name}: create ticket: answer has no ticket id")
        return self._ref(created["id"])

    async def _upload(self, incident: IncidentView) -> tuple[list[str], str]:
        """Upload the screenshot and log: their tokens, and the note naming the files that are
        not attached (the ticket is created either way)."""

        async def upload(file: Attachment) -> str:
            response = await self.http.request(
                "POST", "/api/v2/uploads", action=f"upload {file.filename}", content=file.data,
                params={"filename": file.filename}, headers={"Content-Type": file.mime})
            answer = json_object(response, f"{self.name}: upload").get("upload")
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise PermanentSinkError(f"{self.name}: upload {file.filename}: the answer "
                                         "has no token")
            return token

        return await upload_evidence(incident.evidence, upload, "Zendesk", self.state_dir,
                                     self.evidence_url)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Add a comment; on escalation or de-escalation also set the new priority."""
        ticket: dict[str, Any] = {"comment": self._comment(event.text)}
        if event.kind in (EventKind.ESCALATED, EventKind.DEESCALATED):
            ticket["priority"] = self.config.priorities[incident.level]
        await self.http.request("PUT", f"/api/v2/tickets/{ref.external_id}",
                                action="comment", json={"ticket": ticket})

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Solve the ticket with a comment."""
        await self.http.request(
            "PUT", f"/api/v2/tickets/{ref.external_id}", action="solve ticket",
            json={"ticket": {"status": "solved",
                             "comment": self._comment(resolution_text(incident))}})


def build(config: ZendeskConfig, ctx: SinkBuildContext) -> ZendeskSink:
    """The Zendesk sink for ``config``."""
    auth = basic_auth(f"{config.email}/token", reveal(config.api_token))
    http = TrackerClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout, headers={
        "Authorization": auth, "Accept": "application/json", "User-Agent": ctx.user_agent})
    return ZendeskSink(ctx.name, config, http, ctx.state_dir, ctx.evidence_url)


CONFIG = ZendeskConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
