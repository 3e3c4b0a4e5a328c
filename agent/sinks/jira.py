"""Jira Cloud (REST API v3): one issue per incident, found again by a label.

Create ``POST /rest/api/3/issue`` (ADF description, labels ``storewatch`` and the incident
fingerprint); find ``POST /rest/api/3/search/jql`` on that label outside the Done category;
updates are comments (plus a priority change on escalation); resolve takes the first transition
whose target status is in the Done category, with the resolution only when the screen has it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from agent.errors import PermanentSinkError, SinkError
from agent.sinks.attachments import Attachment, multipart, upload_evidence
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

log = logging.getLogger(__name__)

DEFAULT_PRIORITIES: Mapping[Level, str] = {
    Level.L1: "Highest", Level.L2: "High", Level.L3: "Medium", Level.L4: "Low"}
"""Jira's default priority scheme."""

MAX_SUMMARY = 255


class JiraConfig(SinkSettings):
    """``type: jira``: Jira Cloud, HTTP Basic with an account e-mail and an API token."""

    type: Literal["jira"]
    url: HttpUrl
    """``https://<site>.atlassian.net``"""
    email: str = Field(min_length=3)
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,49}$")
    """Project key, e.g. ``OPS``."""
    issue_type: str = "Bug"
    priorities: Annotated[dict[LevelKey, str], AfterValidator(with_defaults(DEFAULT_PRIORITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    set_priority: bool = True
    """Off for projects whose create screen has no priority field."""
    labels: list[Annotated[str, Field(pattern=r"^\S{1,255}$")]] = Field(default_factory=list)
    """Extra labels besides ``storewatch`` and the fingerprint."""
    resolution: str | None = "Done"
    """Sent on resolve when the transition screen has a Resolution field."""


def adf(text: str) -> dict[str, Any]:
    """Plain/Markdown text as an Atlassian Document: paragraphs, ``` fences as code blocks."""
    content: list[dict[str, Any]] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        lines = [line for line in paragraph if line.strip()]
        nodes: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if i:
                nodes.append({"type": "hardBreak"})
            nodes.append({"type": "text", "text": line})
        if nodes:
            content.append({"type": "paragraph", "content": nodes})
        paragraph.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            if code is None:
                flush()
                code = []
            else:
                block = "\n".join(code)
                content.append({"type": "codeBlock", "content": (
                    [{"type": "text", "text": block}] if block else [])})
                code = None
        elif code is not None:
            code.append(line)
        elif line.strip():
            paragraph.append(line)
        else:
            flush()
    if code is not None:
        paragraph.extend(code)
    flush()
    if not content:
        content.append({"type": "paragraph", "content": [{"type": "text", "text": "-"}]})
    return {"type": "doc", "version": 1, "content": content}


class JiraSink:
    """Tickets as Jira issues."""

    def __init__(self, name: str, config: JiraConfig, http: TrackerClient,
                 state_dir: Path = Path("."), evidence_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.state_dir = state_dir
        self.evidence_url = evidence_url

    def _ref(self, key: str, issue_id: str) -> TicketRef:
        return TicketRef(self.name, key, url=f"{self.config.url}/browse/{key}",
                         extra={"id": issue_id})

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The newest issue of the project labelled with the fingerprint and not Done."""
        jql = (f'project = "{self.config.project}" AND labels = "{incident.fingerprint}" '
               "AND statusCategory != Done ORDER BY created DESC")
        response = await self.http.request(
            "POST", "/rest/api/3/search/jql", action="search issues",
            json={"jql": jql, "fields": ["status", "labels", "summary"], "maxResults": 10})
        for issue in json_object(response, f"{self.name}: search issues").get("issues") or []:
            if isinstance(issue, dict) and issue.get("key"):
                return self._ref(str(issue["key"]), str(issue.get("id", "")))
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Create the issue."""
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": incident.title[:MAX_SUMMARY],
            "description": adf(incident.body),
            "labels": ["storewatch", incident.fingerprint, *self.config.labels],
        }
        if self.config.set_priority:
            fields["priority"] = {"name": self.config.priorities[incident.level]}
        response = await self.http.request("POST", "/rest/api/3/issue", action="create issue",
                                           json={"fields": fields})
        created = json_object(response, f"{self.name}: create issue")
        if not created.get("key"):
            raise PermanentSinkError(f"{self.name}: create issue: answer has no issue key")
        await self._attach(str(created["key"]), incident)
        return self._ref(str(created["key"]), str(created.get("id", "")))

    async def _attach(self, key: str, incident: IncidentView) -> None:
        """Attach a browser check's screenshot and log; the issue stands even if this fails,
        and a comment then says where the files are on the agent."""

        async def attach(file: Attachment) -> None:
            body, content_type = multipart("file", file)
            await self.http.request(
                "POST", f"/rest/api/3/issue/{key}/attachments",
                action=f"attach {file.filename}", content=body,
                headers={"X-Atlassian-Token": "no-check", "Content-Type": content_type})

        _, note = await upload_evidence(incident.evidence, attach, "Jira", self.state_dir,
                                        self.evidence_url)
        if note:
            try:
                await self.http.request("POST", f"/rest/api/3/issue/{key}/comment",
                                        action="comment", json={"body": adf(note.strip())})
            except SinkError as exc:
                log.warning("%s", exc)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Comment; on escalation or de-escalation also set the new priority."""
        key = ref.external_id
        if self.config.set_priority and event.kind in (EventKind.ESCALATED,
                                                       EventKind.DEESCALATED):
            await self.http.request(
                "PUT", f"/rest/api/3/issue/{key}", action="set priority",
                json={"fields": {"priority": {"name": self.config.priorities[incident.level]}}})
        await self.http.request("POST", f"/rest/api/3/issue/{key}/comment", action="comment",
                                json={"body": adf(event.text)})

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Take the transition into the Done category, with a comment; no-op if already Done."""
        key = ref.external_id
        response = await self.http.request(
            "GET", f"/rest/api/3/issue/{key}/transitions", action="list transitions",
            params={"expand": "transitions.fields"})
        transitions = json_object(response, f"{self.name}: list transitions").get(
            "transitions") or []
        done = next((t for t in transitions if isinstance(t, dict)
                     and ((t.get("to") or {}).get("statusCategory") or {}).get("key") == "done"),
                    None)
        if done is None:
            if await self._is_done(key):
                return  # resolved by a person, or by our own earlier attempt
            raise PermanentSinkError(
                f"{self.name}: resolve {key}: no transition to a Done status from the issue's "
                "current status (check the project workflow)")
        body: dict[str, Any] = {
            "transition": {"id": str(done["id"])},
            "update": {"comment": [{"add": {"body": adf(resolution_text(incident))}}]},
        }
        if self.config.resolution and "resolution" in (done.get("fields") or {}):
            body["fields"] = {"resolution": {"name": self.config.resolution}}
        await self.http.request("POST", f"/rest/api/3/issue/{key}/transitions",
                                action="resolve", json=body)

    async def _is_done(self, key: str) -> bool:
        response = await self.http.request("GET", f"/rest/api/3/issue/{key}", action="read issue",
                                           params={"fields": "status"})
        fields = json_object(response, f"{self.name}: read issue").get("fields") or {}
        category = ((fields.get("status") or {}).get("statusCategory") or {}).get("key")
        return bool(category == "done")


def build(config: JiraConfig, ctx: SinkBuildContext) -> JiraSink:
    """The Jira sink for ``config``."""
    auth = basic_auth(config.email, reveal(config.api_token))
    http = TrackerClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout, headers={
        "Authorization": auth, "Accept": "application/json",
        "User-Agent": ctx.user_agent})
    return JiraSink(ctx.name, config, http, ctx.state_dir, ctx.evidence_url)


CONFIG = JiraConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
