"""The webhook sink against a real aiohttp receiver on loopback that verifies signatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.base import EventKind, SinkBuildContext
from agent.sinks.webhook import signing_key
from tests.agent.sinks.harness import CANARY, NOW, build_sink, config
from tests.agent.sinks.incidents import FINGERPRINT, event, make_incident, resolved
from tests.agent.sinks.receivers import Reply, webhook_receiver


@pytest.fixture
def ctx(http: httpx.AsyncClient, tmp_path: Path) -> SinkBuildContext:
    return SinkBuildContext(name="hook", http_factory=lambda: http, state_dir=tmp_path,
                            user_agent="sw/1")


async def test_events_are_signed_and_carry_the_documented_fields(ctx: SinkBuildContext) -> None:
    async with webhook_receiver(CANARY, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url, headers={"X-Team": "ops"}), ctx,
                          clock=lambda: NOW)
        incident = make_incident()
        ref = await sink.open(incident)
        await sink.update(ref, incident, event(EventKind.ESCALATED, "now L1"))
        await sink.resolve(ref, resolved(incident))
    assert receiver.rejected == []
    opened, escalated, done = receiver.events
    headers = receiver.deliveries[0][0]
    assert headers["content-type"] == "application/json"
    assert headers["x-team"] == "ops"
    assert headers["webhook-id"] == opened["event_id"]
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["x-storewatch-signature-256"].startswith("sha256=")
    assert ref.external_id == FINGERPRINT
    assert opened == {
        "event_id": opened["event_id"], "event": "opened", "incident_key": FINGERPRINT,
        "incident_id": 42, "status": "firing", "severity": "critical", "level": "L1",
        "store": "acme-shop", "check": "checkout", "kind": "checkout_broken",
        "title": incident.title, "summary": "add to cart returns HTTP 500",
        "started_at": "2026-03-01T10:00:00Z", "last_seen": "2026-03-01T10:02:00Z",
        "resolved_at": None, "occurrences": 3,
        "details": {"body": incident.body, "rule": "checkout-http-5xx",
                    "reason": incident.reason, "plan": "support-package", "priority": 1,
                    "flapping": False, "suppressed": [],
                    "evidence": incident.evidence.as_dict(), "account_manager": "Dana"},
        "links": [{"href": "https://grafana.example/d/acme", "text": "Dashboard"}]}
    assert opened["event_id"].startswith("msg_")
    assert (escalated["event"], escalated["status"], escalated["details"]["note"]) == (
        "escalated", "firing", "now L1")
    assert (done["event"], done["status"], done["resolved_at"]) == (
        "resolved", "resolved", "2026-03-01T10:07:00Z")
    assert len({e["event_id"] for e in receiver.events}) == 3


async def test_a_retried_event_keeps_its_id_so_the_receiver_can_deduplicate(
        ctx: SinkBuildContext) -> None:
    async with webhook_receiver(CANARY, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url), ctx, clock=lambda: NOW)
        receiver.replies.append(Reply(status=502))
        with pytest.raises(RetryableSinkError, match="hook: send opened: HTTP 502"):
            await sink.open(make_incident())
        await sink.open(make_incident())
        await sink.open(make_incident())  # re-sent after a crash
    ids = {headers["webhook-id"] for headers, _ in receiver.deliveries}
    assert len(receiver.deliveries) == 3 and len(ids) == 1
    assert receiver.incidents() == {FINGERPRINT: {"status": "firing", "events": ["opened"]}}


async def test_the_receiver_rejects_a_wrong_key_and_that_is_permanent(
        ctx: SinkBuildContext) -> None:
    async with webhook_receiver(CANARY, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url, secret="another-secret-123456"),
                          ctx, clock=lambda: NOW)
        with pytest.raises(PermanentSinkError, match="HTTP 401: bad webhook-signature"):
            await sink.open(make_incident())
    assert receiver.events == []


async def test_whsec_secrets_are_base64_keys(ctx: SinkBuildContext) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert signing_key(secret) == b"k" * 24
    async with webhook_receiver(secret, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url, secret=secret), ctx,
                          clock=lambda: NOW)
        await sink.open(make_incident())
    assert receiver.rejected == [] and len(receiver.events) == 1


async def test_a_stalled_receiver_is_a_retryable_timeout(ctx: SinkBuildContext) -> None:
    async with webhook_receiver(CANARY, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url, timeout="200ms"), ctx,
                          clock=lambda: NOW)
        receiver.replies.append(Reply(stall=1.0))
        with pytest.raises(RetryableSinkError, match=r"hook: send opened: no response within "
                                                     r"0.2s"):
            await sink.open(make_incident())


async def test_the_body_is_compact_utf8_json(ctx: SinkBuildContext) -> None:
    async with webhook_receiver(CANARY, NOW.timestamp()) as (url, receiver):
        sink = build_sink("webhook", config("webhook", url), ctx, clock=lambda: NOW)
        await sink.open(make_incident(site="café-shop"))
    raw = receiver.deliveries[0][1]
    assert "café-shop".encode() in raw
    assert json.loads(raw)["store"] == "café-shop"
