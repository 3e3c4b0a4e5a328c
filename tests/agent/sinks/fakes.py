"""Stateful stand-ins for the SaaS trackers, built on respx from the documented request and
response shapes (/work/shared/reference/ticket-apis.md). Each records every request, can be
told to fail the next ones, and keeps its tickets so tests can look at the tracker's side.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import respx

Failure = Callable[[httpx.Request], httpx.Response]
"""Builds the failing answer for a request (or raises a transport error)."""


def status(code: int, headers: dict[str, str] | None = None, echo: bool = True) -> Failure:
    """Answer ``code``; the body echoes the request's headers and body, like a verbose proxy
    error page would, so tests can prove secrets are scrubbed from error text."""

    def fail(request: httpx.Request) -> httpx.Response:
        credentials = {k: v for k, v in request.headers.items()
                       if k.lower() in ("authorization", "x-redmine-api-key")}
        text = json.dumps({"error": f"HTTP {code}", **credentials,  # within the first 200 chars
                           "body": request.content.decode(errors="replace"),
                           "headers": dict(request.headers)}) if echo else ""
        return httpx.Response(code, headers=headers or {}, text=text)

    return fail


def timeout(request: httpx.Request) -> httpx.Response:
    """The tracker never answers in time."""
    raise httpx.ReadTimeout("timed out", request=request)


class AcceptThenTimeout:
    """The duplicate trap: the next create is carried out, but its answer never arrives.

    Requests of other kinds (e.g. the search before the create) pass untouched.
    """

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return timeout(request)


CREATE_HANDLERS = frozenset({"create", "enqueue", "post"})
"""Handler names of the routes that create a ticket (or trigger an alert)."""


@dataclass
class Ticket:
    """A ticket as the tracker holds it."""

    id: str
    state: str  # "open" | "resolved"
    data: dict[str, Any]
    comments: list[str] = field(default_factory=list)


class FakeTracker:
    """Common parts: request log, failure queue, tickets."""

    base_url = ""

    def __init__(self) -> None:
        self.router = respx.MockRouter(base_url=self.base_url, assert_all_called=False,
                                       assert_all_mocked=True)
        self.requests: list[httpx.Request] = []
        self.failures: list[Failure] = []
        self.tickets: dict[str, Ticket] = {}
        self._ids = itertools.count(1)
        self.routes()

    def routes(self) -> None:
        """Install the tracker's routes on ``self.router``."""
        raise NotImplementedError

    def on(self, method: str, path: str, handler: Callable[..., httpx.Response]) -> None:
        """Route ``method`` + path regex to ``handler(request, **groups)``."""

        def side_effect(request: httpx.Request, **groups: str) -> httpx.Response:
            self.requests.append(request)
            if self.failures and isinstance(self.failures[0], AcceptThenTimeout):
                if handler.__name__ not in CREATE_HANDLERS:
                    return handler(request, **groups)
                self.failures.pop(0)
                handler(request, **groups)  # the tracker does it ...
                return timeout(request)  # ... but the answer never arrives
            if self.failures:
                return self.failures.pop(0)(request)
            return handler(request, **groups)

        self.router.route(method=method, path__regex=f"^{path}$").mock(side_effect=side_effect)

    def fail_next(self, *failures: Failure) -> None:
        """Make the next requests fail, in order."""
        self.failures.extend(failures)

    def next_id(self) -> int:
        """A fresh ticket id."""
        return next(self._ids)

    def open_tickets(self) -> list[Ticket]:
        """Tickets not resolved."""
        return [t for t in self.tickets.values() if t.state == "open"]


def body(request: httpx.Request) -> Any:
    """The request's JSON body."""
    return json.loads(request.content)


def query(request: httpx.Request) -> dict[str, str]:
    """The request's query parameters (last value wins)."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


class FakeJira(FakeTracker):
    """Jira Cloud REST v3."""

    base_url = "https://acme.atlassian.net"

    def routes(self) -> None:
        """Create, search/jql, comment, edit, transitions, read."""
        self.on("POST", "/rest/api/3/issue", self.create)
        self.on("POST", "/rest/api/3/search/jql", self.search)
        self.on("POST", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)/comment", self.comment)
        self.on("PUT", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)", self.edit)
        self.on("GET", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)/transitions", self.transitions)
        self.on("POST", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)/transitions", self.transition)
        self.on("GET", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)", self.read)
        self.on("POST", r"/rest/api/3/issue/(?P<key>[A-Z]+-\d+)/attachments", self.attach)

    def create(self, request: httpx.Request) -> httpx.Response:
        fields = body(request)["fields"]
        if not isinstance(fields.get("description"), dict):
            return httpx.Response(400, json={"errorMessages": [], "errors": {
                "description": "Operation value must be an Atlassian Document "
                               "(see the Atlassian Document Format)"}})
        n = self.next_id()
        key = f"{fields['project']['key']}-{n}"
        self.tickets[key] = Ticket(key, "open", {"id": str(10000 + n), **fields})
        return httpx.Response(201, json={"id": str(10000 + n), "key": key,
                                         "self": f"{self.base_url}/rest/api/3/issue/{n}"})

    def search(self, request: httpx.Request) -> httpx.Response:
        jql = body(request)["jql"]
        label = re.search(r'labels = "([^"]+)"', jql)
        issues = [{"id": t.data["id"], "key": t.id, "fields": {
            "labels": t.data["labels"], "summary": t.data["summary"],
            "status": {"statusCategory": {"key": "new"}}}}
            for t in reversed(self.tickets.values())
            if label and label.group(1) in t.data["labels"]
            and ("statusCategory != Done" not in jql or t.state == "open")]
        return httpx.Response(200, json={"issues": issues, "isLast": True})

    def comment(self, request: httpx.Request, key: str) -> httpx.Response:
        if key not in self.tickets:
            return httpx.Response(404, json={"errorMessages": ["Issue does not exist"]})
        self.tickets[key].comments.append(json.dumps(body(request)["body"]))
        return httpx.Response(201, json={"id": "1"})

    def edit(self, request: httpx.Request, key: str) -> httpx.Response:
        self.tickets[key].data.update(body(request)["fields"])
        return httpx.Response(204)

    def transitions(self, request: httpx.Request, key: str) -> httpx.Response:
        if self.tickets[key].state == "resolved":
            return httpx.Response(200, json={"transitions": [
                {"id": "41", "name": "Reopen", "to": {"name": "To Do",
                                                      "statusCategory": {"key": "new"}}}]})
        return httpx.Response(200, json={"transitions": [
            {"id": "21", "name": "Start", "to": {"name": "In Progress",
                                                 "statusCategory": {"key": "indeterminate"}}},
            {"id": "31", "name": "Resolve", "to": {"name": "Done",
                                                   "statusCategory": {"key": "done"}},
             "fields": {"resolution": {"required": True}}}]})

    def transition(self, request: httpx.Request, key: str) -> httpx.Response:
        sent = body(request)
        if sent["transition"]["id"] != "31" or "resolution" not in sent.get("fields", {}):
            return httpx.Response(400, json={"errors": {"resolution": "Resolution is required."}})
        ticket = self.tickets[key]
        ticket.state = "resolved"
        ticket.comments.append(json.dumps(sent["update"]["comment"][0]["add"]["body"]))
        return httpx.Response(204)

    def attach(self, request: httpx.Request, key: str) -> httpx.Response:
        """Multipart field ``file``; without ``X-Atlassian-Token: no-check`` Jira answers 403."""
        if request.headers.get("x-atlassian-token") != "no-check":
            return httpx.Response(403, text="XSRF check failed")
        match = re.search(rb'name="file"; filename="([^"]+)"\r\nContent-Type: ([^\r]+)\r\n\r\n',
                          request.content)
        if key not in self.tickets or match is None:
            return httpx.Response(400, json={"errorMessages": ["no file"]})
        self.tickets[key].data.setdefault("attachments", []).append(match.group(1).decode())
        return httpx.Response(200, json=[{"id": "10100", "filename": match.group(1).decode(),
                                          "mimeType": match.group(2).decode()}])

    def read(self, request: httpx.Request, key: str) -> httpx.Response:
        category = "done" if self.tickets[key].state == "resolved" else "new"
        return httpx.Response(200, json={"key": key, "fields": {
            "status": {"statusCategory": {"key": category}}}})


class FakeRedmine(FakeTracker):
    """Redmine REST (JSON)."""

    base_url = "https://redmine.acme.example"
    closed = 5

    max_upload = 5 * 1024 * 1024
    """Redmine's default ``attachment_max_size`` (5 MB)."""

    def __init__(self) -> None:
        self.workflow_allows_close = True
        self.uploads: dict[str, tuple[str, bytes]] = {}
        """Upload token → (filename, bytes), until an issue takes it."""
        super().__init__()

    def routes(self) -> None:
        """Upload, create, list with filters, update, read."""
        self.on("POST", "/uploads.json", self.upload)
        self.on("POST", "/issues.json", self.create)
        self.on("GET", "/issues.json", self.search)
        self.on("PUT", r"/issues/(?P<id>\d+)\.json", self.update)
        self.on("GET", r"/issues/(?P<id>\d+)\.json", self.read)

    def upload(self, request: httpx.Request) -> httpx.Response:
        """Raw bytes as ``application/octet-stream`` (else 406) → ``{"upload": {id, token}}``;
        over ``attachment_max_size`` → 422."""
        if request.headers.get("content-type") != "application/octet-stream":
            return httpx.Response(406)
        if len(request.content) > self.max_upload:
            return httpx.Response(422, json={"errors": [
                "This file cannot be uploaded because it exceeds the maximum allowed file "
                "size (5 MB)"]})
        n = self.next_id()
        token = f"{n}.{n:064x}"
        self.uploads[token] = (query(request).get("filename", "upload"), request.content)
        return httpx.Response(201, json={"upload": {"id": n, "token": token}})

    def create(self, request: httpx.Request) -> httpx.Response:
        issue = body(request)["issue"]
        if not issue.get("subject"):
            return httpx.Response(422, json={"errors": ["Subject cannot be blank"]})
        attachments = []
        for upload in issue.get("uploads", []):
            if upload.get("token") not in self.uploads:
                return httpx.Response(422, json={"errors": ["Attachments is invalid"]})
            _, data = self.uploads.pop(upload["token"])
            attachments.append((upload["filename"], upload.get("content_type"), data))
        n = str(self.next_id())
        self.tickets[n] = Ticket(n, "open", {**issue, "status_id": 1,
                                             "attachments": attachments})
        return httpx.Response(201, json={"issue": {"id": int(n), **issue}})

    def search(self, request: httpx.Request) -> httpx.Response:
        q = query(request)
        filters = {k[3:]: v for k, v in q.items() if k.startswith("cf_")}
        found = [t for t in self.tickets.values()
                 if (q.get("status_id") != "open" or t.state == "open")
                 and all(any(str(cf["id"]) == fid and cf["value"] == value
                             for cf in t.data["custom_fields"])
                         for fid, value in filters.items())]
        found.sort(key=lambda t: -int(t.id))
        return httpx.Response(200, json={"issues": [{"id": int(t.id)} for t in found],
                                         "total_count": len(found), "offset": 0, "limit": 100})

    def update(self, request: httpx.Request, id: str) -> httpx.Response:
        if id not in self.tickets:
            return httpx.Response(404)
        ticket, issue = self.tickets[id], body(request)["issue"]
        if "notes" in issue:
            ticket.comments.append(issue["notes"])
        if "priority_id" in issue:
            ticket.data["priority_id"] = issue["priority_id"]
        if "status_id" in issue and self.workflow_allows_close:  # else silently ignored
            ticket.data["status_id"] = issue["status_id"]
            ticket.state = "resolved" if issue["status_id"] == self.closed else "open"
        return httpx.Response(204)

    def read(self, request: httpx.Request, id: str) -> httpx.Response:
        ticket = self.tickets[id]
        closed = ticket.state == "resolved"
        return httpx.Response(200, json={"issue": {
            "id": int(id), "status": {"id": ticket.data["status_id"],
                                      "name": "Closed" if closed else "New"},
            "closed_on": "2026-03-01T10:07:00Z" if closed else None}})


class FakeZendesk(FakeTracker):
    """Zendesk Ticketing API."""

    base_url = "https://acme.zendesk.com"

    def __init__(self) -> None:
        self.idempotency: dict[str, tuple[str, str]] = {}
        self.uploads: dict[str, tuple[str, str, bytes]] = {}
        """Upload token → (file name, content type, bytes), until a comment takes it."""
        super().__init__()

    def routes(self) -> None:
        """Upload, create (idempotent), list by external_id, update."""
        self.on("POST", "/api/v2/uploads", self.upload)
        self.on("POST", "/api/v2/tickets", self.create)
        self.on("GET", "/api/v2/tickets", self.search)
        self.on("PUT", r"/api/v2/tickets/(?P<id>\d+)", self.update)

    def _json(self, ticket: Ticket) -> dict[str, Any]:
        status = {"open": "open", "resolved": "solved"}[ticket.state]
        data = {k: v for k, v in ticket.data.items() if k != "attachments"}
        return {"id": int(ticket.id), **data, "status": ticket.data.get("status", status)}

    def create(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("idempotency-key")
        content = request.content.decode()
        if key in self.idempotency:
            first_body, ticket_id = self.idempotency[key]
            if first_body != content:
                return httpx.Response(400, json={"error": "IdempotentRequestError"})
            return httpx.Response(201, headers={"x-idempotency-lookup": "hit"},
                                  json={"ticket": self._json(self.tickets[ticket_id])})
        ticket = body(request)["ticket"]
        attachments = []
        for token in ticket.get("comment", {}).get("uploads", []):
            if token not in self.uploads:
                return httpx.Response(422, json={"error": "RecordInvalid",
                                                 "description": "Uploads token invalid"})
            attachments.append(self.uploads.pop(token))
        n = str(self.next_id())
        self.tickets[n] = Ticket(n, "open", {
            **ticket, "created_at": f"2026-03-01T10:{int(n):02d}:00Z",
            "attachments": attachments})
        if key:
            self.idempotency[key] = (content, n)
        return httpx.Response(201, headers={"x-idempotency-lookup": "miss"},
                              json={"ticket": self._json(self.tickets[n])})

    def upload(self, request: httpx.Request) -> httpx.Response:
        """Raw bytes with their MIME type, ``?filename=`` required → ``{"upload": {token,
        attachment}}``."""
        name = query(request).get("filename")
        if not name:
            return httpx.Response(400, json={"error": "filename is required"})
        n = self.next_id()
        token = f"tok{n:012d}"
        mime = request.headers.get("content-type", "application/binary")
        self.uploads[token] = (name, mime, request.content)
        return httpx.Response(201, json={"upload": {
            "token": token, "expires_at": "2026-03-01T11:00:00Z",
            "attachment": {"id": 500 + n, "file_name": name, "content_type": mime,
                           "size": len(request.content)}}})

    def search(self, request: httpx.Request) -> httpx.Response:
        wanted = query(request).get("external_id")
        found = [self._json(t) for t in self.tickets.values()
                 if t.data.get("external_id") == wanted]
        return httpx.Response(200, json={"tickets": found, "count": len(found)})

    def update(self, request: httpx.Request, id: str) -> httpx.Response:
        ticket, change = self.tickets[id], body(request)["ticket"]
        if ticket.data.get("status") == "closed":
            return httpx.Response(422, json={"error": "RecordInvalid",
                                             "description": "Status: closed prevents update"})
        if "comment" in change:
            ticket.comments.append(change["comment"]["body"])
        if "priority" in change:
            ticket.data["priority"] = change["priority"]
        if change.get("status") == "solved":
            ticket.state = "resolved"
        return httpx.Response(200, json={"ticket": self._json(ticket)})


class FakeGitHub(FakeTracker):
    """GitHub Issues REST; lists ``page_size`` items per page with a ``Link`` header."""

    base_url = "https://api.github.com"
    repo = "acme/shop-ops"
    page_size = 2

    def routes(self) -> None:
        """Create, list (paginated, with pull requests mixed in), read, edit, comment."""
        issues = f"/repos/{self.repo}/issues"
        self.on("POST", issues, self.create)
        self.on("GET", issues, self.list)
        self.on("GET", rf"{issues}/(?P<n>\d+)", self.read)
        self.on("PATCH", rf"{issues}/(?P<n>\d+)", self.edit)
        self.on("POST", rf"{issues}/(?P<n>\d+)/comments", self.comment)

    def _json(self, ticket: Ticket) -> dict[str, Any]:
        out = {"number": int(ticket.id), "id": 900 + int(ticket.id),
               "html_url": f"https://github.com/{self.repo}/issues/{ticket.id}",
               "state": "closed" if ticket.state == "resolved" else "open",
               "title": ticket.data["title"], "body": ticket.data.get("body"),
               "labels": [{"name": name} for name in ticket.data.get("labels", [])]}
        if ticket.data.get("pull_request"):
            out["pull_request"] = {"url": "https://api.github.com/pulls/1"}
        return out

    def add_pull_request(self, body_text: str) -> None:
        """A pull request (listed by the issues endpoint too) whose body mentions a key."""
        n = str(self.next_id())
        self.tickets[n] = Ticket(n, "open", {"title": "PR", "body": body_text,
                                             "labels": ["storewatch"], "pull_request": True})

    def create(self, request: httpx.Request) -> httpx.Response:
        sent = body(request)
        n = str(self.next_id())
        self.tickets[n] = Ticket(n, "open", sent)
        return httpx.Response(201, json=self._json(self.tickets[n]))

    def list(self, request: httpx.Request) -> httpx.Response:
        q = query(request)
        page = int(q.get("page", "1"))
        items = [self._json(t) for t in sorted(self.tickets.values(), key=lambda t: -int(t.id))
                 if (q.get("state") != "open" or t.state == "open")
                 and q.get("labels", "") in t.data.get("labels", [])]
        chunk = items[(page - 1) * self.page_size: page * self.page_size]
        headers = {}
        if page * self.page_size < len(items):
            nxt = (f"{self.base_url}/repos/{self.repo}/issues?state=open&labels="
                   f"{q['labels']}&per_page=100&page={page + 1}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, headers=headers, json=chunk)

    def read(self, request: httpx.Request, n: str) -> httpx.Response:
        return httpx.Response(200, json=self._json(self.tickets[n]))

    def edit(self, request: httpx.Request, n: str) -> httpx.Response:
        ticket, sent = self.tickets[n], body(request)
        if "labels" in sent:
            ticket.data["labels"] = sent["labels"]
        if sent.get("state") == "closed":
            ticket.state = "resolved"
        return httpx.Response(200, json=self._json(ticket))

    def comment(self, request: httpx.Request, n: str) -> httpx.Response:
        self.tickets[n].comments.append(body(request)["body"])
        return httpx.Response(201, json={"id": 1, "body": body(request)["body"]})


class FakePagerDuty(FakeTracker):
    """PagerDuty Events API v2: alerts keyed by (routing_key, dedup_key)."""

    base_url = "https://events.pagerduty.com"

    def routes(self) -> None:
        """The one enqueue endpoint."""
        self.on("POST", "/v2/enqueue", self.enqueue)

    def enqueue(self, request: httpx.Request) -> httpx.Response:
        event = body(request)
        if len(event.get("routing_key", "")) != 32:
            return httpx.Response(400, json={"status": "invalid event",
                                             "message": "Event object is invalid",
                                             "errors": ["Length of 'routing_key' is incorrect"]})
        key = event["dedup_key"]
        alert = self.tickets.get(key)
        if event["event_action"] == "trigger":
            payload = event["payload"]
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                return httpx.Response(400, json={"status": "invalid event"})
            if alert is None or alert.state == "resolved":
                self.tickets[key] = Ticket(key, "open", event)
            else:
                alert.data = event
                alert.comments.append(payload["custom_details"].get("update", ""))
        elif alert is not None and event["event_action"] == "resolve":
            alert.state = "resolved"
        return httpx.Response(202, json={"status": "success", "message": "Event processed",
                                         "dedup_key": key})


class FakeAlertmanager(FakeTracker):
    """Alertmanager API v2: alerts identified by their label set; resolved once endsAt ≤ now."""

    base_url = "http://alertmanager.acme.example:9093"

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        super().__init__()

    def routes(self) -> None:
        """POST /api/v2/alerts."""
        self.on("POST", "/api/v2/alerts", self.post)

    def post(self, request: httpx.Request) -> httpx.Response:
        alerts = body(request)
        if not isinstance(alerts, list):
            return httpx.Response(400, text="json: cannot unmarshal object")
        for alert in alerts:
            identity = json.dumps(alert["labels"], sort_keys=True)
            ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
            state = "resolved" if ends <= self.now() else "open"
            ticket = self.tickets.get(identity)
            if ticket is None:
                self.tickets[identity] = Ticket(identity, state, alert)
            else:
                ticket.data, ticket.state = alert, state
                ticket.comments.append(alert["annotations"].get("summary", ""))
        return httpx.Response(200)
