"""A browser check's screenshot travels with the ticket: attached to the first e-mail of the
thread (real SMTP server) and to the Jira issue (the documented attachments endpoint)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.sinks.attachments import screenshot
from agent.sinks.base import SinkBuildContext
from classifier import Evidence
from tests.agent.sinks import fakes
from tests.agent.sinks.harness import CANARY, USER, build_sink, config
from tests.agent.sinks.incidents import make_incident
from tests.agent.sinks.receivers import Authenticator, MailHandler, smtp_server
from tests.conftest import TLSMaterial

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def ctx(http: httpx.AsyncClient, tmp_path: Path) -> SinkBuildContext:
    return SinkBuildContext(name="tickets", http_factory=lambda: http, state_dir=tmp_path,
                            user_agent="sw/1")


def with_screenshot(tmp_path: Path) -> object:
    shot = tmp_path / "evidence" / "journey-20260301T100000-add-to-cart.png"
    shot.parent.mkdir(parents=True)
    shot.write_bytes(PNG)
    return dataclasses.replace(make_incident(), evidence=Evidence(
        url="https://acme.example/", details={"step": "add-to-cart", "screenshot": str(shot)}))


async def test_jira_issue_gets_the_screenshot(ctx: SinkBuildContext, tmp_path: Path) -> None:
    jira = fakes.FakeJira()
    with jira.router:
        sink = build_sink("jira", config("jira", jira.base_url), ctx)
        ref = await sink.open(with_screenshot(tmp_path))  # type: ignore[arg-type]
    attach = jira.requests[-1]
    assert attach.url.path == f"/rest/api/3/issue/{ref.external_id}/attachments"
    assert attach.headers["x-atlassian-token"] == "no-check"
    assert PNG in attach.content
    assert jira.tickets[ref.external_id].data["attachments"] == [
        "journey-20260301T100000-add-to-cart.png"]


async def test_a_failed_attachment_keeps_the_issue(ctx: SinkBuildContext, tmp_path: Path) -> None:
    jira = fakes.FakeJira()
    with jira.router:
        sink = build_sink("jira", config("jira", jira.base_url), ctx)
        incident = with_screenshot(tmp_path)
        jira.fail_next(jira.create, lambda request: httpx.Response(413, text="too large"))
        ref = await sink.open(incident)  # type: ignore[arg-type]
    assert ref.external_id == "OPS-1"
    assert jira.requests[-2].url.path.endswith("/attachments")
    assert "attachments" not in jira.tickets["OPS-1"].data
    (comment,) = jira.tickets["OPS-1"].comments  # where the screenshot is, since not attached
    assert "Evidence not attached** (the upload to Jira failed)" in comment
    assert "journey-20260301T100000-add-to-cart.png (on the agent host)" in comment


async def test_jira_issue_gets_the_log_too(ctx: SinkBuildContext, tmp_path: Path) -> None:
    jira = fakes.FakeJira()
    incident = with_screenshot(tmp_path)
    log = tmp_path / "evidence" / "journey-20260301T100000-add-to-cart.json"
    log.write_text('{"console": []}')
    incident = dataclasses.replace(incident, evidence=Evidence(details={  # type: ignore[type-var]
        **incident.evidence.details, "browser_log": str(log)}))  # type: ignore[attr-defined]
    with jira.router:
        sink = build_sink("jira", config("jira", jira.base_url), ctx)
        ref = await sink.open(incident)  # type: ignore[arg-type]
    assert jira.tickets[ref.external_id].data["attachments"] == [
        "journey-20260301T100000-add-to-cart.png", log.name]
    assert jira.tickets[ref.external_id].comments == []


@pytest.fixture
async def smtp(tls_material: TLSMaterial) -> AsyncIterator[tuple[int, MailHandler, Authenticator]]:
    async with smtp_server(str(tls_material.leaf_cert), str(tls_material.leaf_key), USER,
                           CANARY) as server:
        yield server


async def test_email_thread_starts_with_the_screenshot(
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext, tmp_path: Path) -> None:
    port, handler, _ = smtp
    sink = build_sink("email", config("email", "", port=port, ca_file=str(tls_material.ca_cert)),
                      ctx)
    incident = with_screenshot(tmp_path)
    await sink.open(incident)  # type: ignore[arg-type]
    (message,) = handler.messages
    (part,) = list(message.iter_attachments())
    assert part.get_content_type() == "image/png"
    assert part.get_filename() == "journey-20260301T100000-add-to-cart.png"
    assert part.get_content() == PNG
    assert message.get_body(("plain",)).get_content().startswith("Level L1")


async def test_email_carries_the_browser_log_too(
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext, tmp_path: Path) -> None:
    port, handler, _ = smtp
    sink = build_sink("email", config("email", "", port=port, ca_file=str(tls_material.ca_cert)),
                      ctx)
    incident = with_screenshot(tmp_path)
    log = tmp_path / "evidence" / "journey-20260301T100000-add-to-cart.json"
    log.write_text('{"console": ["TypeError"]}')
    incident = dataclasses.replace(incident, evidence=Evidence(details={  # type: ignore[type-var]
        **incident.evidence.details, "browser_log": str(log)}))  # type: ignore[attr-defined]
    await sink.open(incident)  # type: ignore[arg-type]
    (message,) = handler.messages
    parts = [(p.get_content_type(), p.get_filename()) for p in message.iter_attachments()]
    assert parts == [("image/png", "journey-20260301T100000-add-to-cart.png"),
                     ("application/json", log.name)]


def test_only_a_readable_png_is_attached(tmp_path: Path) -> None:
    assert screenshot(Evidence()) is None
    assert screenshot(Evidence(details={"screenshot": str(tmp_path / "gone.png")})) is None
    text = tmp_path / "x.png"
    text.write_text("not a png")
    assert screenshot(Evidence(details={"screenshot": str(text)})) is None
