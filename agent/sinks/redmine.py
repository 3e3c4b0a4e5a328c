"""Redmine (REST API, JSON): one issue per incident, found again by a custom field.

The fingerprint goes into a custom field (``dedup_field_id``; it must be "Used as a filter").
Find ``GET /issues.json?status_id=open&cf_N=<fingerprint>``; updates ``PUT /issues/ID.json``
with notes (and the priority on escalation); resolve sets ``closed_status_id`` and reads the
issue back, because Redmine silently ignores a status the API user's workflow does not allow.
A browser check's screenshot and log are uploaded first (``POST /uploads.json``, raw bytes as
``application/octet-stream``, answering a token) and named in the new issue's ``uploads``; an
upload that fails leaves them out and the description says where they are on the agent.
"""

from __future__ import annotations

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
from agent.sinks.settings import HttpUrl, LevelKey, Secret, SinkSettings, reveal, with_defaults
from agent.sinks.transport import TrackerClient, json_object
from classifier import Level

DEFAULT_PRIORITIES: Mapping[Level, int] = {Level.L1: 5, Level.L2: 4, Level.L3: 3, Level.L4: 2}
"""Ids of a default Redmine install: 5 Immediate, 4 Urgent, 3 High, 2 Normal."""


class RedmineConfig(SinkSettings):
    """``type: redmine``: key in ``X-Redmine-API-Key`` (REST web service must be enabled)."""

    type: Literal["redmine"]
    url: HttpUrl
    api_key: Secret
    project: str = Field(min_length=1)
    """Project identifier or id."""
    dedup_field_id: int = Field(gt=0)
    """Id of a text custom field, "Used as a filter", holding the incident fingerprint."""
    tracker_id: int | None = Field(default=None, gt=0)
    priorities: Annotated[dict[LevelKey, int], AfterValidator(with_defaults(DEFAULT_PRIORITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    closed_status_id: int = Field(default=5, gt=0)
    """Status set on resolve (5 = Closed in a default install)."""
    private_notes: bool = False


class RedmineSink:
    """Tickets as Redmine issues."""

    def __init__(self, name: str, config: RedmineConfig, http: TrackerClient,
                 state_dir: Path = Path("."), evidence_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.state_dir = state_dir
        self.evidence_url = evidence_url

    def _ref(self, issue_id: object) -> TicketRef:
        return TicketRef(self.name, str(issue_id), url=f"{self.config.url}/issues/{issue_id}")

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The newest open issue whose custom field holds the fingerprint."""
        response = await self.http.request("GET", "/issues.json", action="search issues", params={
            "project_id": self.config.project, "status_id": "open",
            f"cf_{self.config.dedup_field_id}": incident.fingerprint,
            "sort": "id:desc", "limit": "100"})
        for issue in json_object(response, f"{self.name}: search issues").get("issues") or []:
            if isinstance(issue, dict) and issue.get("id") is not None:
                return self._ref(issue["id"])
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Upload the evidence files, then create the issue with them."""
        uploads, note = await self._upload(incident)
        issue: dict[str, Any] = {
            "project_id": self.config.project,
            "subject": incident.title[:255],
            "description": incident.body + note,
            "priority_id": self.config.priorities[incident.level],
            "custom_fields": [{"id": self.config.dedup_field_id, "value": incident.fingerprint}],
        }
        if self.config.tracker_id is not None:
            issue["tracker_id"] = self.config.tracker_id
        if uploads:
            issue["uploads"] = uploads
        response = await self.http.request("POST", "/issues.json", action="create issue",
                                           json={"issue": issue})
        created = json_object(response, f"{self.name}: create issue").get("issue") or {}
        if not isinstance(created, dict) or created.get("id") is None:
            raise PermanentSinkError(f"{self.name}: create issue: answer has no issue id")
        return self._ref(created["id"])

    async def _upload(self, incident: IncidentView) -> tuple[list[dict[str, str]], str]:
        """Upload the screenshot and log: their ``uploads`` entries, and the note naming the
        files that are not attached (the issue is created either way)."""

        async def upload(file: Attachment) -> dict[str, str]:
            response = await self.http.request(
                "POST", "/uploads.json", action=f"upload {file.filename}", content=file.data,
                params={"filename": file.filename},
                headers={"Content-Type": "application/octet-stream"})
            answer = json_object(response, f"{self.name}: upload").get("upload")
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise PermanentSinkError(f"{self.name}: upload {file.filename}: the answer "
                                         "has no token")
            return {"token": token, "filename": file.filename, "content_type": file.mime}

        return await upload_evidence(incident.evidence, upload, "Redmine", self.state_dir,
                                     self.evidence_url)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Add a note; on escalation or de-escalation also set the new priority."""
        issue: dict[str, Any] = {"notes": event.text, "private_notes": self.config.private_notes}
        if event.kind in (EventKind.ESCALATED, EventKind.DEESCALATED):
            issue["priority_id"] = self.config.priorities[incident.level]
        await self.http.request("PUT", f"/issues/{ref.external_id}.json", action="add note",
                                json={"issue": issue})

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Set the closed status with a note, then confirm the status really changed."""
        path = f"/issues/{ref.external_id}.json"
        status = self.config.closed_status_id
        await self.http.request("PUT", path, action="close issue", json={"issue": {
            "status_id": status, "notes": resolution_text(incident),
            "private_notes": self.config.private_notes}})
        response = await self.http.request("GET", path, action="read issue")
        issue = json_object(response, f"{self.name}: read issue").get("issue") or {}
        if not isinstance(issue, dict):
            issue = {}
        now = (issue.get("status") or {}).get("id")
        if now != status and not issue.get("closed_on"):  # closed otherwise (by a person) is fine
            raise PermanentSinkError(
                f"{self.name}: close issue {ref.external_id}: status is still {now}, not "
                f"{status}: the API user's workflow does not allow that transition")


def build(config: RedmineConfig, ctx: SinkBuildContext) -> RedmineSink:
    """The Redmine sink for ``config``."""
    http = TrackerClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout, headers={
        "X-Redmine-API-Key": reveal(config.api_key), "Accept": "application/json",
        "User-Agent": ctx.user_agent})
    return RedmineSink(ctx.name, config, http, ctx.state_dir, ctx.evidence_url)


CONFIG = RedmineConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
