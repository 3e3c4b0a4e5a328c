"""Redmine and Zendesk tickets carry a browser check's screenshot and log through the trackers'
documented upload APIs (token first, then the issue/comment names it); a failed or refused
upload never costs the ticket, whose text then says where the files are on the agent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from agent.sinks import attachments
from agent.sinks.attachments import MAX_ATTACHMENT_BYTES
from agent.sinks.base import IncidentView, SinkBuildContext
from classifier import Evidence
from tests.agent.sinks import fakes
from tests.agent.sinks.harness import build_sink, config
from tests.agent.sinks.incidents import make_incident

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64
LOG = json.dumps({"url": "https://acme.example/cart", "console": ["TypeError: x is null"]})
AGENT_URL = "https://agent-fra.agency.example:9478"


def ctx_for(http: httpx.AsyncClient, state_dir: Path, url: str | None = None) -> SinkBuildContext:
    return SinkBuildContext(name="tickets", http_factory=lambda: http, state_dir=state_dir,
                            user_agent="sw/1", evidence_url=url)


def browser_incident(state_dir: Path, png: bytes = PNG) -> tuple[IncidentView, Path, Path]:
    """An incident whose evidence names a screenshot and a log under ``state_dir``."""
    folder = state_dir / "evidence" / "acme-shop"
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "journey-20260301T100000-add-to-cart.png"
    shot.write_bytes(png)
    log = folder / "journey-20260301T100000-add-to-cart.json"
    log.write_text(LOG)
    incident = dataclasses.replace(make_incident(), evidence=Evidence(
        url="https://acme.example/cart", details={
            "step": "add-to-cart", "screenshot": str(shot), "browser_log": str(log)}))
    return incident, shot, log


# -- Redmine ---------------------------------------------------------------------------------

async def test_redmine_issue_carries_screenshot_and_log(http: httpx.AsyncClient,
                                                        tmp_path: Path) -> None:
    redmine = fakes.FakeRedmine()
    incident, shot, log = browser_incident(tmp_path)
    with redmine.router:
        sink = build_sink("redmine", config("redmine", redmine.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    uploads = [r for r in redmine.requests if r.url.path == "/uploads.json"]
    assert [fakes.query(r)["filename"] for r in uploads] == [shot.name, log.name]
    assert all(r.headers["content-type"] == "application/octet-stream" for r in uploads)
    assert uploads[0].content == PNG  # the raw bytes, not a multipart form
    issue = redmine.tickets[ref.external_id].data
    assert issue["attachments"] == [(shot.name, "image/png", PNG),
                                    (log.name, "application/json", LOG.encode())]
    assert "not attached" not in issue["description"]
    assert redmine.uploads == {}  # every token was used by the issue


async def test_redmine_failed_upload_keeps_the_issue_and_names_the_files(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    redmine = fakes.FakeRedmine()
    incident, shot, log = browser_incident(tmp_path)
    with redmine.router:
        sink = build_sink("redmine", config("redmine", redmine.base_url), ctx_for(http, tmp_path))
        redmine.fail_next(fakes.status(503))
        ref = await sink.open(incident)
    issue = redmine.tickets[ref.external_id].data
    assert "uploads" not in issue and issue["attachments"] == []
    description = issue["description"]
    assert "Evidence not attached** (the upload to Redmine failed)" in description
    assert f"- screenshot: {shot} (on the agent host)" in description
    assert f"- browser log: {log} (on the agent host)" in description


async def test_redmine_upload_timeout_links_the_agent_when_its_url_is_known(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    redmine = fakes.FakeRedmine()
    incident, shot, _ = browser_incident(tmp_path)
    with redmine.router:
        sink = build_sink("redmine", config("redmine", redmine.base_url),
                          ctx_for(http, tmp_path, AGENT_URL))
        redmine.fail_next(fakes.timeout)
        ref = await sink.open(incident)
    description = redmine.tickets[ref.external_id].data["description"]
    assert f"- screenshot: {AGENT_URL}/evidence/acme-shop/{shot.name}" in description


async def test_redmine_oversized_screenshot_stays_on_the_agent(http: httpx.AsyncClient,
                                                               tmp_path: Path) -> None:
    redmine = fakes.FakeRedmine()
    big = PNG + b"\x00" * MAX_ATTACHMENT_BYTES
    incident, shot, log = browser_incident(tmp_path, png=big)
    with redmine.router:
        sink = build_sink("redmine", config("redmine", redmine.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    assert [fakes.query(r)["filename"] for r in redmine.requests
            if r.url.path == "/uploads.json"] == [log.name]  # the cap: never sent
    issue = redmine.tickets[ref.external_id].data
    assert [a[0] for a in issue["attachments"]] == [log.name]
    assert "too large (over 4 MB) or unreadable" in issue["description"]
    assert f"- screenshot: {shot}" in issue["description"]
    assert f"- browser log: {log}" not in issue["description"]


async def test_redmine_refusing_the_upload_is_not_a_dead_letter(http: httpx.AsyncClient,
                                                                tmp_path: Path) -> None:
    """A tracker limit below ours (422 from Redmine): the issue is still created."""
    redmine = fakes.FakeRedmine()
    redmine.max_upload = 16
    incident, _, _ = browser_incident(tmp_path)
    with redmine.router:
        sink = build_sink("redmine", config("redmine", redmine.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    issue = redmine.tickets[ref.external_id].data
    assert issue["attachments"] == []
    assert "the upload to Redmine failed" in issue["description"]


# -- Zendesk ---------------------------------------------------------------------------------

async def test_zendesk_first_comment_carries_screenshot_and_log(http: httpx.AsyncClient,
                                                                tmp_path: Path) -> None:
    zendesk = fakes.FakeZendesk()
    incident, shot, log = browser_incident(tmp_path)
    with zendesk.router:
        sink = build_sink("zendesk", config("zendesk", zendesk.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    uploads = [r for r in zendesk.requests if r.url.path == "/api/v2/uploads"]
    assert [(fakes.query(r)["filename"], r.headers["content-type"]) for r in uploads] == [
        (shot.name, "image/png"), (log.name, "application/json")]
    create = next(r for r in zendesk.requests if r.url.path == "/api/v2/tickets"
                  and r.method == "POST")
    assert len(fakes.body(create)["ticket"]["comment"]["uploads"]) == 2
    ticket = zendesk.tickets[ref.external_id].data
    assert ticket["attachments"] == [(shot.name, "image/png", PNG),
                                     (log.name, "application/json", LOG.encode())]
    assert "not attached" not in ticket["comment"]["body"]


@pytest.mark.parametrize("failure", [fakes.status(500), fakes.status(413), fakes.timeout])
async def test_zendesk_failed_upload_keeps_the_ticket(http: httpx.AsyncClient, tmp_path: Path,
                                                      failure: fakes.Failure) -> None:
    zendesk = fakes.FakeZendesk()
    incident, shot, log = browser_incident(tmp_path)
    with zendesk.router:
        sink = build_sink("zendesk", config("zendesk", zendesk.base_url),
                          ctx_for(http, tmp_path, AGENT_URL))
        zendesk.fail_next(failure)
        ref = await sink.open(incident)
    ticket = zendesk.tickets[ref.external_id].data
    assert "uploads" not in ticket["comment"] and ticket["attachments"] == []
    text = ticket["comment"]["body"]
    assert "the upload to Zendesk failed" in text
    assert f"{AGENT_URL}/evidence/acme-shop/{shot.name}" in text
    assert f"{AGENT_URL}/evidence/acme-shop/{log.name}" in text


async def test_zendesk_second_upload_failing_keeps_the_first(http: httpx.AsyncClient,
                                                             tmp_path: Path) -> None:
    zendesk = fakes.FakeZendesk()
    incident, shot, log = browser_incident(tmp_path)
    ok = zendesk.upload
    with zendesk.router:
        sink = build_sink("zendesk", config("zendesk", zendesk.base_url), ctx_for(http, tmp_path))
        zendesk.fail_next(ok, fakes.status(502))
        ref = await sink.open(incident)
    ticket = zendesk.tickets[ref.external_id].data
    assert [a[0] for a in ticket["attachments"]] == [shot.name]
    assert f"- browser log: {log} (on the agent host)" in ticket["comment"]["body"]
    assert f"- screenshot: {shot}" not in ticket["comment"]["body"]


async def test_no_evidence_files_no_uploads(http: httpx.AsyncClient, tmp_path: Path) -> None:
    redmine, zendesk = fakes.FakeRedmine(), fakes.FakeZendesk()
    with redmine.router, zendesk.router:
        for name, fake in (("redmine", redmine), ("zendesk", zendesk)):
            sink = build_sink(name, config(name, fake.base_url), ctx_for(http, tmp_path))
            await sink.open(make_incident())
    assert not [r for r in redmine.requests + zendesk.requests if "uploads" in r.url.path]


# -- GitHub: no attachment API, links to the agent -------------------------------------------

async def test_github_issue_links_the_evidence_the_agent_serves(http: httpx.AsyncClient,
                                                                tmp_path: Path) -> None:
    github = fakes.FakeGitHub()
    incident, shot, log = browser_incident(tmp_path)
    with github.router:
        sink = build_sink("github", config("github", github.base_url),
                          ctx_for(http, tmp_path, AGENT_URL + "/"))
        ref = await sink.open(incident)
    assert [(r.method, r.url.path) for r in github.requests] == [
        ("POST", f"/repos/{github.repo}/issues")]  # nothing uploaded anywhere
    body = github.tickets[ref.external_id].data["body"]
    assert f"- screenshot: [{shot.name}]({AGENT_URL}/evidence/acme-shop/{shot.name})" in body
    assert f"- browser log: [{log.name}]({AGENT_URL}/evidence/acme-shop/{log.name})" in body
    assert body.rstrip().endswith("-->")  # the find marker stays last


async def test_github_without_agent_url_names_the_paths(http: httpx.AsyncClient,
                                                        tmp_path: Path) -> None:
    github = fakes.FakeGitHub()
    incident, shot, _ = browser_incident(tmp_path)
    with github.router:
        sink = build_sink("github", config("github", github.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    body = github.tickets[ref.external_id].data["body"]
    assert f"- screenshot: `{shot}` on the agent host" in body
    assert f"[{shot.name}](" not in body  # no link without the agent's URL


async def test_github_never_links_a_file_outside_the_evidence_folder(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    """Only the evidence folder is served: a path elsewhere gets no (dead) link."""
    github = fakes.FakeGitHub()
    elsewhere = tmp_path / "other" / "shot.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(PNG)
    incident = dataclasses.replace(make_incident(), evidence=Evidence(
        details={"screenshot": str(elsewhere)}))
    with github.router:
        sink = build_sink("github", config("github", github.base_url),
                          ctx_for(http, tmp_path / "state", AGENT_URL))
        ref = await sink.open(incident)
    body = github.tickets[ref.external_id].data["body"]
    assert f"- screenshot: `{elsewhere}` on the agent host" in body
    assert AGENT_URL not in body


async def test_slow_uploads_do_not_hold_the_ticket_back(http: httpx.AsyncClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each upload within its own deadline, but together over the budget: the rest is skipped
    and the ticket created (the delivery attempt's deadline is for the ticket)."""
    monkeypatch.setattr(attachments, "UPLOAD_BUDGET_S", 0.6)
    zendesk = fakes.FakeZendesk()
    incident, shot, log = browser_incident(tmp_path)
    fast = zendesk.upload

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.4)  # under the sink's 0.5 s request timeout
        return fast(request)

    zendesk.upload = slow  # type: ignore[assignment,method-assign]
    zendesk.router.routes.clear()
    zendesk.routes()
    with zendesk.router:
        sink = build_sink("zendesk", config("zendesk", zendesk.base_url), ctx_for(http, tmp_path))
        ref = await sink.open(incident)
    ticket = zendesk.tickets[ref.external_id].data
    assert [a[0] for a in ticket["attachments"]] == [shot.name]
    assert "the upload to Zendesk took too long" in ticket["comment"]["body"]
    assert f"- browser log: {log} (on the agent host)" in ticket["comment"]["body"]
