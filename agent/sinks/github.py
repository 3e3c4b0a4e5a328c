"""GitHub Issues (REST): one issue per incident, labelled ``storewatch``, with a hidden marker.

The fingerprint sits in the body as ``<!-- storewatch:key=<fingerprint> -->`` (one label per
incident would sprawl). Find lists the repository's open issues with the label, follows
``Link: rel="next"`` (same host only), skips pull requests and matches the marker. The level is
a label (``priorities``), swapped on escalation; resolve comments and closes as completed.
A 403/429 with ``retry-after`` or an exhausted ``x-ratelimit-remaining`` is retryable.
GitHub has no attachment API for issues: a browser check's screenshot and log are linked from
the body, at the URLs the agent serves them (``incidents.evidence.url``), else named by their
path on the agent host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, Field

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.attachments import evidence_links
from agent.sinks.base import (
    EventKind,
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
    retry_after_seconds,
)
from agent.sinks.render import resolution_text
from agent.sinks.settings import HttpUrl, LevelKey, Secret, SinkSettings, reveal, with_defaults
from agent.sinks.transport import TrackerClient, json_list, json_object
from classifier import Level

DEFAULT_PRIORITIES: Mapping[Level, str] = {
    Level.L1: "storewatch:L1", Level.L2: "storewatch:L2", Level.L3: "storewatch:L3",
    Level.L4: "storewatch:L4"}
MAX_PAGES = 20
"""Find reads at most 2,000 open issues with the label."""


def marker(fingerprint: str) -> str:
    """The hidden body line that carries the fingerprint."""
    return f"<!-- storewatch:key={fingerprint} -->"


class GitHubConfig(SinkSettings):
    """``type: github``: a token with "Issues: read & write" on the repository."""

    type: Literal["github"]
    url: HttpUrl = "https://api.github.com"
    """GitHub Enterprise Server: ``https://<host>/api/v3``."""
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """``owner/name``"""
    token: Secret
    label: str = Field(default="storewatch", min_length=1, max_length=50)
    priorities: Annotated[dict[LevelKey, str], AfterValidator(with_defaults(DEFAULT_PRIORITIES))
                          ] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    """Level → label on the issue."""


class GitHubClient(TrackerClient):
    """GitHub's rate limit answers 403 as often as 429: both are retryable then."""

    def check(self, response: httpx.Response, what: str) -> None:
        """Rate-limited 403/429 → retryable with the wait GitHub asks for; else the default."""
        if response.status_code in (403, 429):
            wait = retry_after_seconds(response.headers)
            if wait is None and response.headers.get("x-ratelimit-remaining") == "0":
                reset = response.headers.get("x-ratelimit-reset", "")
                wait = max(0.0, float(reset) - time.time()) if reset.isdigit() else 60.0
            if wait is not None:
                raise RetryableSinkError(
                    scrub(f"{what}: HTTP {response.status_code}: rate limited"),
                    retry_after=wait)
        super().check(response, what)


class GitHubSink:
    """Tickets as GitHub issues."""

    def __init__(self, name: str, config: GitHubConfig, http: TrackerClient,
                 state_dir: Path = Path("."), evidence_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.state_dir = state_dir
        self.evidence_url = evidence_url
        self.issues = f"/repos/{config.repo}/issues"

    def _ref(self, issue: Mapping[str, Any]) -> TicketRef:
        return TicketRef(self.name, str(issue["number"]), url=issue.get("html_url"))

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The open issue with the label whose body carries the fingerprint's marker."""
        wanted = marker(incident.fingerprint)
        url: str | None = self.http.url(self.issues)
        params: dict[str, str] | None = {
            "state": "open", "labels": self.config.label, "per_page": "100"}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            response = await self.http.request("GET", url, action="list issues", params=params)
            for issue in json_list(response, f"{self.name}: list issues"):
                if (isinstance(issue, dict) and "pull_request" not in issue
                        and wanted in (issue.get("body") or "") and "number" in issue):
                    return self._ref(issue)
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries the query
        return None

    async def open(self, incident: IncidentView) -> TicketRef:
        """Create the issue with the evidence links, the marker and the labels."""
        links = evidence_links(incident.evidence, self.state_dir, self.evidence_url)
        response = await self.http.request("POST", self.issues, action="create issue", json={
            "title": incident.title,
            "body": f"{incident.body}{links}\n\n{marker(incident.fingerprint)}",
            "labels": [self.config.label, self.config.priorities[incident.level]]})
        created = json_object(response, f"{self.name}: create issue")
        if "number" not in created:
            raise PermanentSinkError(f"{self.name}: create issue: answer has no issue number")
        return self._ref(created)

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Comment; on escalation or de-escalation swap the level label."""
        path = f"{self.issues}/{ref.external_id}"
        if event.kind in (EventKind.ESCALATED, EventKind.DEESCALATED):
            response = await self.http.request("GET", path, action="read issue")
            current = [label.get("name") if isinstance(label, dict) else label
                       for label in json_object(response, f"{self.name}: read issue").get(
                           "labels") or []]
            levels = set(self.config.priorities.values())
            labels = [str(name) for name in current if name and name not in levels]
            labels.append(self.config.priorities[incident.level])
            await self.http.request("PATCH", path, action="set level label",
                                    json={"labels": labels})
        await self.http.request("POST", f"{path}/comments", action="comment",
                                json={"body": event.text})

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Close the issue as completed, then comment the recovery (a retry re-closes harmlessly
        instead of commenting twice)."""
        path = f"{self.issues}/{ref.external_id}"
        await self.http.request("PATCH", path, action="close issue",
                                json={"state": "closed", "state_reason": "completed"})
        await self.http.request("POST", f"{path}/comments", action="comment",
                                json={"body": resolution_text(incident)})


def build(config: GitHubConfig, ctx: SinkBuildContext) -> GitHubSink:
    """The GitHub sink for ``config``."""
    http = GitHubClient(ctx.http, config.url, sink=ctx.name, timeout=config.timeout, headers={
        "Authorization": f"Bearer {reveal(config.token)}",
        "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": ctx.user_agent})
    return GitHubSink(ctx.name, config, http, ctx.state_dir, ctx.evidence_url)


CONFIG = GitHubConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
