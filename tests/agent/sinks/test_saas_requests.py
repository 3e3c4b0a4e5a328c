"""The exact requests each SaaS sink sends (method, path, headers, JSON body), against the
vendors' documented shapes (ticket-apis.md), with respx standing in for the vendor."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.base import EventKind, SinkBuildContext
from agent.sinks.jira import adf
from classifier import Level
from tests.agent.sinks import fakes
from tests.agent.sinks.harness import CANARY, NOW, USER, build_sink, config
from tests.agent.sinks.incidents import FINGERPRINT, escalated, event, make_incident, resolved


def sent(request: httpx.Request) -> tuple[str, str, Any]:
    """(method, path, JSON body or None)."""
    return (request.method, request.url.path,
            json.loads(request.content) if request.content else None)


@pytest.fixture
def ctx(http: httpx.AsyncClient, tmp_path: Path) -> SinkBuildContext:
    return SinkBuildContext(name="tickets", http_factory=lambda: http, state_dir=tmp_path,
                            user_agent="sw/1")


@pytest.fixture
async def jira() -> AsyncIterator[fakes.FakeJira]:
    fake = fakes.FakeJira()
    with fake.router:
        yield fake


async def test_jira_requests(jira: fakes.FakeJira, ctx: SinkBuildContext) -> None:
    sink = build_sink("jira", config("jira", jira.base_url, labels=["shop-ops"]), ctx)
    incident = make_incident()
    assert await sink.find(incident) is None
    ref = await sink.open(incident)
    await sink.update(ref, escalated(incident, Level.L2), event(EventKind.DEESCALATED, "L2 now"))
    await sink.resolve(ref, resolved(incident))

    search, create, priority, comment, transitions, transition = jira.requests
    auth = "Basic " + base64.b64encode(f"{USER}:{CANARY}".encode()).decode()
    assert all(r.headers["authorization"] == auth for r in jira.requests)
    assert sent(search) == ("POST", "/rest/api/3/search/jql", {
        "jql": f'project = "OPS" AND labels = "{FINGERPRINT}" AND statusCategory != Done '
               "ORDER BY created DESC",
        "fields": ["status", "labels", "summary"], "maxResults": 10})
    assert sent(create) == ("POST", "/rest/api/3/issue", {"fields": {
        "project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": incident.title,
        "description": adf(incident.body), "priority": {"name": "Highest"},
        "labels": ["storewatch", FINGERPRINT, "shop-ops"]}})
    assert (ref.external_id, ref.url, dict(ref.extra)) == (
        "OPS-1", f"{jira.base_url}/browse/OPS-1", {"id": "10001"})
    assert sent(priority) == ("PUT", "/rest/api/3/issue/OPS-1",
                              {"fields": {"priority": {"name": "High"}}})
    assert sent(comment) == ("POST", "/rest/api/3/issue/OPS-1/comment", {"body": adf("L2 now")})
    assert (transitions.method, transitions.url.path, transitions.url.params["expand"]) == (
        "GET", "/rest/api/3/issue/OPS-1/transitions", "transitions.fields")
    method, path, body = sent(transition)
    assert (method, path) == ("POST", "/rest/api/3/issue/OPS-1/transitions")
    assert body["transition"] == {"id": "31"}
    assert body["fields"] == {"resolution": {"name": "Done"}}
    text = body["update"]["comment"][0]["add"]["body"]["content"][0]["content"][0]["text"]
    assert text == ("Recovered at 2026-03-01T10:07:00Z after 7m "
         "(opened 2026-03-01T10:00:00Z, 3 failing runs).")


def test_adf_paragraphs_and_code_blocks() -> None:
    doc = adf("Level L1\nsecond line\n\n```\nGET / -> 500\n```\n")
    assert doc == {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Level L1"},
                                          {"type": "hardBreak"},
                                          {"type": "text", "text": "second line"}]},
        {"type": "codeBlock", "content": [{"type": "text", "text": "GET / -> 500"}]}]}
    assert adf("") == {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "-"}]}]}


async def test_jira_resolve_of_an_issue_already_done_is_a_no_op(
        jira: fakes.FakeJira, ctx: SinkBuildContext) -> None:
    sink = build_sink("jira", config("jira", jira.base_url), ctx)
    incident = make_incident()
    ref = await sink.open(incident)
    await sink.resolve(ref, resolved(incident))
    await sink.resolve(ref, resolved(incident))  # a retry after a lost answer
    assert [sent(r)[:2] for r in jira.requests[-2:]] == [
        ("GET", "/rest/api/3/issue/OPS-1/transitions"), ("GET", "/rest/api/3/issue/OPS-1")]
    assert jira.tickets["OPS-1"].state == "resolved"


async def test_jira_without_priority_field(jira: fakes.FakeJira, ctx: SinkBuildContext) -> None:
    sink = build_sink("jira", config("jira", jira.base_url, set_priority=False), ctx)
    ref = await sink.open(make_incident())
    await sink.update(ref, make_incident(), event(EventKind.ESCALATED))
    assert "priority" not in sent(jira.requests[0])[2]["fields"]
    assert [r.method for r in jira.requests] == ["POST", "POST"]


async def test_redmine_requests(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeRedmine()
    with fake.router:
        sink = build_sink("redmine", config("redmine", fake.base_url, tracker_id=1), ctx)
        incident = make_incident(level=Level.L3)
        assert await sink.find(incident) is None
        ref = await sink.open(incident)
        await sink.update(ref, escalated(incident, Level.L1), event(EventKind.ESCALATED, "L1!"))
        await sink.resolve(ref, resolved(incident))
    search, create, note, close, read = fake.requests
    assert all(r.headers["x-redmine-api-key"] == CANARY for r in fake.requests)
    assert all("key" not in r.url.params for r in fake.requests)
    assert (search.method, search.url.path, dict(search.url.params)) == (
        "GET", "/issues.json", {"project_id": "shop-ops", "status_id": "open",
                                "cf_7": FINGERPRINT, "sort": "id:desc", "limit": "100"})
    assert sent(create) == ("POST", "/issues.json", {"issue": {
        "project_id": "shop-ops", "subject": incident.title, "description": incident.body,
        "priority_id": 3, "custom_fields": [{"id": 7, "value": FINGERPRINT}],
        "tracker_id": 1}})
    assert (ref.external_id, ref.url) == ("1", f"{fake.base_url}/issues/1")
    assert sent(note) == ("PUT", "/issues/1.json", {"issue": {
        "notes": "L1!", "private_notes": False, "priority_id": 5}})
    assert sent(close)[:2] == ("PUT", "/issues/1.json")
    assert sent(close)[2]["issue"]["status_id"] == 5
    assert sent(read) == ("GET", "/issues/1.json", None)


async def test_redmine_close_ignored_by_the_workflow_is_a_permanent_error(
        ctx: SinkBuildContext) -> None:
    fake = fakes.FakeRedmine()
    fake.workflow_allows_close = False
    with fake.router:
        sink = build_sink("redmine", config("redmine", fake.base_url), ctx)
        ref = await sink.open(make_incident())
        with pytest.raises(PermanentSinkError, match="status is still 1, not 5: the API "
                                                     "user's workflow does not allow"):
            await sink.resolve(ref, resolved(make_incident()))


async def test_zendesk_requests(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeZendesk()
    with fake.router:
        sink = build_sink("zendesk", config("zendesk", fake.base_url, tags=["acme"]), ctx)
        incident = make_incident(level=Level.L2)
        assert await sink.find(incident) is None
        ref = await sink.open(incident)
        again = await sink.open(incident)  # retried create: the idempotency key answers
        await sink.update(ref, incident, event(text="still failing"))
        await sink.resolve(ref, resolved(incident))
    search, create, retried, comment, solve = fake.requests
    auth = "Basic " + base64.b64encode(f"{USER}/token:{CANARY}".encode()).decode()
    assert all(r.headers["authorization"] == auth for r in fake.requests)
    assert (search.url.path, dict(search.url.params)) == (
        "/api/v2/tickets", {"external_id": FINGERPRINT})
    assert sent(create) == ("POST", "/api/v2/tickets", {"ticket": {
        "subject": incident.title, "comment": {"body": incident.body, "public": False},
        "priority": "high", "type": "incident", "tags": ["storewatch", FINGERPRINT, "acme"],
        "external_id": FINGERPRINT}})
    key = create.headers["idempotency-key"]
    assert re.fullmatch(rf"{FINGERPRINT}-42-[0-9a-f]{{16}}", key)
    assert retried.headers["idempotency-key"] == key
    assert again.external_id == ref.external_id == "1" and len(fake.tickets) == 1
    assert ref.url == f"{fake.base_url}/agent/tickets/1"
    assert sent(comment) == ("PUT", "/api/v2/tickets/1", {"ticket": {
        "comment": {"body": "still failing", "public": False}}})
    assert sent(solve) == ("PUT", "/api/v2/tickets/1", {"ticket": {
        "status": "solved", "comment": {
            "body": ("Recovered at 2026-03-01T10:07:00Z after 7m "
         "(opened 2026-03-01T10:00:00Z, 3 failing runs)."),
            "public": False}}})


async def test_zendesk_find_picks_the_newest_live_ticket(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeZendesk()
    for n, status in ((1, "open"), (2, "pending"), (3, "solved"), (4, "closed")):
        fake.tickets[str(n)] = fakes.Ticket(str(n), "open", {
            "external_id": FINGERPRINT, "status": status,
            "created_at": f"2026-03-0{n}T10:00:00Z"})
    with fake.router:
        sink = build_sink("zendesk", config("zendesk", fake.base_url), ctx)
        found = await sink.find(make_incident())
    assert found is not None and found.external_id == "2"


async def test_github_requests(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeGitHub()
    with fake.router:
        sink = build_sink("github", config("github", fake.base_url), ctx)
        incident = make_incident()
        ref = await sink.open(incident)
        await sink.update(ref, escalated(incident, Level.L2), event(EventKind.DEESCALATED, "L2"))
        await sink.resolve(ref, resolved(incident))
    create, read, labels, comment, close, resolution = fake.requests
    for r in fake.requests:
        assert r.headers["authorization"] == f"Bearer {CANARY}"
        assert r.headers["accept"] == "application/vnd.github+json"
        assert r.headers["x-github-api-version"] == "2022-11-28"
        assert r.headers["user-agent"] == "sw/1"
    issues = "/repos/acme/shop-ops/issues"
    assert sent(create) == ("POST", issues, {
        "title": incident.title,
        "body": f"{incident.body}\n\n<!-- storewatch:key={FINGERPRINT} -->",
        "labels": ["storewatch", "storewatch:L1"]})
    assert (ref.external_id, ref.url) == ("1", "https://github.com/acme/shop-ops/issues/1")
    assert sent(read) == ("GET", f"{issues}/1", None)
    assert sent(labels) == ("PATCH", f"{issues}/1", {"labels": ["storewatch", "storewatch:L2"]})
    assert sent(comment) == ("POST", f"{issues}/1/comments", {"body": "L2"})
    assert sent(close) == ("PATCH", f"{issues}/1",
                           {"state": "closed", "state_reason": "completed"})
    assert sent(resolution)[:2] == ("POST", f"{issues}/1/comments")


async def test_github_find_follows_next_links_and_skips_pull_requests(
        ctx: SinkBuildContext) -> None:
    fake = fakes.FakeGitHub()
    with fake.router:
        sink = build_sink("github", config("github", fake.base_url), ctx)
        incident = make_incident()
        ref = await sink.open(incident)  # oldest: listed last
        for n in range(4):
            await sink.open(make_incident(id=n, fingerprint=f"storewatch-other{n}"))
        fake.add_pull_request(f"fixes <!-- storewatch:key={FINGERPRINT} -->")  # newest
        fake.requests.clear()
        found = await sink.find(incident)
    assert found is not None and found.external_id == ref.external_id
    pages = [(r.method, r.url.path, r.url.params.get("page")) for r in fake.requests]
    assert pages == [("GET", "/repos/acme/shop-ops/issues", None),
                     ("GET", "/repos/acme/shop-ops/issues", "2"),
                     ("GET", "/repos/acme/shop-ops/issues", "3")]
    assert dict(fake.requests[0].url.params) == {
        "state": "open", "labels": "storewatch", "per_page": "100"}


async def test_github_next_link_to_another_host_is_refused(ctx: SinkBuildContext) -> None:
    router = respx.MockRouter(assert_all_called=True)
    router.get("https://api.github.com/repos/acme/shop-ops/issues").mock(
        return_value=httpx.Response(200, json=[], headers={
            "Link": '<https://evil.example/steal?page=2>; rel="next"'}))
    with router:
        sink = build_sink("github", config("github", "https://api.github.com"), ctx)
        with pytest.raises(PermanentSinkError, match="refusing URL on another host"):
            await sink.find(make_incident())


@pytest.mark.parametrize(("headers", "wait"), [
    pytest.param({"retry-after": "60"}, 60.0, id="retry-after"),
    pytest.param({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}, 0.0,
                 id="reset-passed"),
])
async def test_github_rate_limited_403_is_retryable(
        headers: dict[str, str], wait: float, ctx: SinkBuildContext) -> None:
    fake = fakes.FakeGitHub()
    fake.fail_next(fakes.status(403, headers))
    with fake.router:
        sink = build_sink("github", config("github", fake.base_url), ctx)
        with pytest.raises(RetryableSinkError, match="HTTP 403: rate limited") as raised:
            await sink.open(make_incident())
    assert raised.value.retry_after == wait


async def test_pagerduty_requests(ctx: SinkBuildContext) -> None:
    fake = fakes.FakePagerDuty()
    with fake.router:
        sink = build_sink("pagerduty", config(
            "pagerduty", fake.base_url, client_url="https://storewatch.example"), ctx)
        incident = make_incident(level=Level.L3)
        ref = await sink.open(incident)
        await sink.update(ref, escalated(incident, Level.L1), event(EventKind.ESCALATED, "L1"))
        await sink.resolve(ref, resolved(incident))
    trigger, update, resolve = fake.requests
    assert all("authorization" not in r.headers for r in fake.requests)
    assert sent(trigger) == ("POST", "/v2/enqueue", {
        "routing_key": CANARY, "event_action": "trigger", "dedup_key": FINGERPRINT,
        "payload": {
            "summary": incident.title, "source": "acme-shop", "severity": "warning",
            "timestamp": "2026-03-01T10:00:00Z", "component": "checkout", "group": "acme-shop",
            "class": "checkout_broken", "custom_details": {
                "level": "L3", "kind": "checkout_broken", "rule": "checkout-http-5xx",
                "reason": incident.reason, "plan": "support-package", "occurrences": 3,
                "evidence": incident.evidence.as_dict(), "account_manager": "Dana"}},
        "client": "storewatch", "client_url": "https://storewatch.example",
        "links": [{"href": "https://grafana.example/d/acme", "text": "Dashboard"}]})
    assert ref.external_id == FINGERPRINT
    assert sent(update)[2]["payload"]["severity"] == "critical"
    assert sent(update)[2]["payload"]["custom_details"]["update"] == "L1"
    assert sent(resolve) == ("POST", "/v2/enqueue", {
        "routing_key": CANARY, "dedup_key": FINGERPRINT, "event_action": "resolve"})


async def test_pagerduty_429_without_retry_after_waits_30s(ctx: SinkBuildContext) -> None:
    fake = fakes.FakePagerDuty()
    fake.fail_next(fakes.status(429, echo=False))
    with fake.router:
        sink = build_sink("pagerduty", config("pagerduty", fake.base_url), ctx)
        with pytest.raises(RetryableSinkError) as raised:
            await sink.open(make_incident())
    assert raised.value.retry_after == 30.0


async def test_alertmanager_requests_and_resend(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeAlertmanager(lambda: NOW)
    with fake.router:
        sink = build_sink("alertmanager", config(
            "alertmanager", fake.base_url, labels={"team": "shop-ops"}), ctx, clock=lambda: NOW)
        incident = make_incident(level=Level.L2)
        ref = await sink.open(incident)
        await sink.update(ref, incident, event(EventKind.REMINDER))
        await sink.update(ref, escalated(incident, Level.L1), event(EventKind.ESCALATED))
        await sink.resolve(ref, resolved(escalated(incident, Level.L1)))
    fire, resend, escalate, resolve = fake.requests
    assert fire.headers["authorization"] == f"Bearer {CANARY}"
    labels = {"team": "shop-ops", "alertname": "StorewatchIncident", "site": "acme-shop",
              "check": "checkout", "kind": "checkout_broken", "severity": "error",
              "incident": FINGERPRINT}
    assert sent(fire) == ("POST", "/api/v2/alerts", [{
        "labels": labels,
        "annotations": {"summary": incident.title, "description": incident.body,
                        "level": "L2", "rule": "checkout-http-5xx"},
        "startsAt": "2026-03-01T10:00:00Z", "endsAt": "2026-03-01T10:14:00Z",
        "generatorURL": "https://grafana.example/d/acme"}])
    assert sent(resend)[2] == sent(fire)[2]  # same identity, endsAt pushed by the clock
    escalation = sent(escalate)[2]
    assert escalation[0]["labels"] == {**labels, "severity": "critical"}
    assert escalation[0]["endsAt"] == "2026-03-01T10:14:00Z"
    ended = {a["labels"]["severity"]: a["endsAt"] for a in escalation[1:]}
    assert ended == {s: "2026-03-01T10:10:00Z" for s in ("error", "warning", "info")}
    assert sent(resolve)[2][0]["labels"] == {**labels, "severity": "critical"}
    assert sent(resolve)[2][0]["endsAt"] == "2026-03-01T10:10:00Z"
    assert {t.data["labels"]["severity"]: t.state for t in fake.tickets.values()} == {
        "critical": "resolved", "error": "resolved", "warning": "resolved", "info": "resolved"}
    assert sink.resend_interval == 60.0  # type: ignore[attr-defined]


async def test_alertmanager_cluster_one_peer_down_still_delivers(
        ctx: SinkBuildContext, caplog: pytest.LogCaptureFixture) -> None:
    up, down = fakes.FakeAlertmanager(lambda: NOW), "http://alertmanager-1.acme.example:9093"
    up.router.route(host="alertmanager-1.acme.example").mock(
        side_effect=httpx.ConnectError("connection refused"))
    with up.router:
        cfg = config("alertmanager", up.base_url)
        cfg["urls"] = [down, up.base_url]
        sink = build_sink("alertmanager", cfg, ctx, clock=lambda: NOW)
        await sink.open(make_incident())
    assert len(up.tickets) == 1
    assert "tickets: fire: connection failed" in caplog.text


async def test_alertmanager_every_peer_down_is_retryable(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeAlertmanager(lambda: NOW)
    fake.fail_next(fakes.status(503), fakes.status(400))
    with fake.router:
        cfg = config("alertmanager", fake.base_url)
        cfg["urls"] = [fake.base_url, fake.base_url + "/"]
        sink = build_sink("alertmanager", cfg, ctx, clock=lambda: NOW)
        with pytest.raises(RetryableSinkError, match=r"HTTP 503.*; .*HTTP 400"):
            await sink.open(make_incident())


async def test_a_2xx_answer_that_is_not_json_is_retryable(jira: fakes.FakeJira,
                                                          ctx: SinkBuildContext) -> None:
    jira.fail_next(lambda request: httpx.Response(201, text="<html>proxy</html>"))
    sink = build_sink("jira", config("jira", jira.base_url), ctx)
    with pytest.raises(RetryableSinkError, match="tickets: create issue: HTTP 201 without the "
                                                 "expected JSON object"):
        await sink.open(make_incident())


async def test_zendesk_idempotency_key_changes_with_the_ticket_text(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeZendesk()
    with fake.router:
        sink = build_sink("zendesk", config("zendesk", fake.base_url), ctx)
        await sink.open(make_incident())
        await sink.open(escalated(make_incident(), Level.L2))  # re-rendered before the retry
    first, second = (r.headers["idempotency-key"] for r in fake.requests)
    assert first != second  # a reused key with another body would be rejected by Zendesk


async def test_redmine_issue_closed_by_a_person_resolves_quietly(ctx: SinkBuildContext) -> None:
    fake = fakes.FakeRedmine()
    with fake.router:
        sink = build_sink("redmine", config("redmine", fake.base_url), ctx)
        ref = await sink.open(make_incident())
        ticket = fake.tickets[ref.external_id]
        ticket.state, ticket.data["status_id"] = "resolved", 6  # "Rejected" by a person
        fake.workflow_allows_close = False  # and 6 → 5 is not in the workflow
        await sink.resolve(ref, resolved(make_incident()))
    assert ticket.data["status_id"] == 6
