"""The contract every sink keeps (alertmanager's notify/test style): one suite, every sink."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from agent.errors import PermanentSinkError, RetryableSinkError, SinkError
from agent.sinks import SINKS, sink_factory, sink_model
from agent.sinks.base import EventKind, TicketSink
from tests.agent.sinks.harness import ALL_SINKS, HTTP_SINKS, SEARCHABLE, Fail, harness
from tests.agent.sinks.incidents import event, make_incident, resolved
from tests.conftest import TLSMaterial


def test_registry_covers_every_sink_and_each_satisfies_the_protocol() -> None:
    assert set(ALL_SINKS) <= set(SINKS)
    for name in ALL_SINKS:
        model, factory = sink_model(name), sink_factory(name)
        assert model.model_fields["type"].annotation.__args__ == (name,)  # type: ignore[union-attr]
        assert callable(factory)


@pytest.mark.parametrize("name", ALL_SINKS)
async def test_open_update_resolve_round_trip(name: str, http: httpx.AsyncClient,
                                              tmp_path: Path, tls_material: TLSMaterial) -> None:
    async with harness(name, http, tmp_path, tls_material) as h:
        sink = h.build()
        assert isinstance(sink, TicketSink)
        assert sink.name == f"{name}-main"
        incident = make_incident()

        ref = await sink.open(incident)
        assert ref.sink == sink.name
        assert h.tickets() == {ref.external_id: "open"}

        await sink.update(ref, incident, event(EventKind.REMINDER))
        assert h.updates(ref.external_id) == 1
        assert h.tickets() == {ref.external_id: "open"}

        await sink.resolve(ref, resolved(incident))
        assert h.tickets() == {ref.external_id: "resolved"}


@pytest.mark.parametrize("name", ALL_SINKS)
async def test_after_a_crash_the_ticket_is_found_or_the_same_one_is_reached(
        name: str, http: httpx.AsyncClient, tmp_path: Path, tls_material: TLSMaterial) -> None:
    async with harness(name, http, tmp_path, tls_material) as h:
        incident = make_incident()
        created = await h.build().open(incident)
        # the process dies before the ref is recorded; a new process builds a new sink
        restarted = h.build()
        found = await restarted.find(incident)
        if name in SEARCHABLE:
            assert found is not None
            assert found.external_id == created.external_id
            assert found.extra == created.extra
        else:
            assert found is None
            again = await restarted.open(incident)  # the outbox re-sends the open
            assert again.external_id == created.external_id
        assert h.tickets() == {created.external_id: "open"}


@pytest.mark.parametrize("name", ALL_SINKS)
async def test_find_ignores_other_incidents_and_resolved_tickets(
        name: str, http: httpx.AsyncClient, tmp_path: Path, tls_material: TLSMaterial) -> None:
    async with harness(name, http, tmp_path, tls_material) as h:
        sink = h.build()
        other = make_incident(id=7, fingerprint="storewatch-000000000000")
        await sink.open(other)
        first = make_incident()
        assert await sink.find(first) is None
        ref = await sink.open(first)
        await sink.resolve(ref, resolved(first))
        assert await sink.find(make_incident(id=43)) is None


FAILURES = [
    pytest.param(Fail(500), RetryableSinkError, None, id="500"),
    pytest.param(Fail(503, {"Retry-After": "12"}), RetryableSinkError, 12.0, id="503-retry-after"),
    pytest.param(Fail(429, {"Retry-After": "7"}), RetryableSinkError, 7.0, id="429-retry-after"),
    pytest.param(Fail(None), RetryableSinkError, None, id="timeout"),
    pytest.param(Fail(401), PermanentSinkError, None, id="401"),
    pytest.param(Fail(403), PermanentSinkError, None, id="403"),
    pytest.param(Fail(404), PermanentSinkError, None, id="404"),
    pytest.param(Fail(422), PermanentSinkError, None, id="422"),
]


@pytest.mark.parametrize(("fail", "error", "retry_after"), FAILURES)
@pytest.mark.parametrize("name", HTTP_SINKS)
async def test_failures_are_retryable_or_permanent_and_never_leak_the_secret(
        name: str, fail: Fail, error: type[SinkError], retry_after: float | None,
        http: httpx.AsyncClient, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with harness(name, http, tmp_path) as h:
        sink = h.build()
        incident = make_incident()
        h.fail_next(fail)
        with pytest.raises(SinkError) as raised:
            await sink.open(incident)
        assert type(raised.value) is error
        if isinstance(raised.value, RetryableSinkError):
            if name == "pagerduty" and fail.status == 429 and retry_after is None:
                retry_after = 30.0
            assert raised.value.retry_after == retry_after
        message = str(raised.value)
        assert message.startswith(f"{name}-main: ")
        if fail.status is not None:
            assert f"HTTP {fail.status}" in message
        assert "\n" not in message and len(message) < 400
        # the next attempt goes through and reaches one ticket
        ref = await sink.open(incident)
        assert h.tickets() == {ref.external_id: "open"}
        for secret in h.secrets:
            assert secret not in message
            assert secret not in repr(raised.value.args)
            assert secret not in caplog.text
            assert all(secret not in url for url in h.requests())


@pytest.mark.parametrize("action", ["update", "resolve"])
@pytest.mark.parametrize("name", HTTP_SINKS)
async def test_update_and_resolve_failures_are_retryable_and_a_retry_completes(
        name: str, action: str, http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with harness(name, http, tmp_path) as h:
        sink = h.build()
        incident = make_incident()
        ref = await sink.open(incident)

        async def act() -> None:
            if action == "update":
                await sink.update(ref, incident, event())
            else:
                await sink.resolve(ref, resolved(incident))

        h.fail_next(Fail(503))
        with pytest.raises(RetryableSinkError, match="HTTP 503"):
            await act()
        await act()
        assert h.tickets() == {ref.external_id: "resolved" if action == "resolve" else "open"}
        if action == "update":
            assert h.updates(ref.external_id) == 1
