"""The e-mail sink against a real SMTP server on loopback (aiosmtpd): STARTTLS, AUTH, replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.errors import PermanentSinkError, RetryableSinkError, SinkError
from agent.sinks.base import EventKind, SinkBuildContext
from tests.agent.servers import free_port
from tests.agent.sinks.harness import CANARY, USER, build_sink, config
from tests.agent.sinks.incidents import FINGERPRINT, event, make_incident, resolved
from tests.agent.sinks.receivers import Authenticator, MailHandler, smtp_server
from tests.conftest import TLSMaterial


@pytest.fixture
def ctx(http: httpx.AsyncClient, tmp_path: Path) -> SinkBuildContext:
    return SinkBuildContext(name="mail", http_factory=lambda: http, state_dir=tmp_path,
                            user_agent="sw/1")


@pytest.fixture
async def smtp(tls_material: TLSMaterial) -> AsyncIterator[tuple[int, MailHandler, Authenticator]]:
    async with smtp_server(str(tls_material.leaf_cert), str(tls_material.leaf_key), USER,
                           CANARY) as server:
        yield server


def mail_config(port: int, tls: TLSMaterial, **extra: Any) -> dict[str, Any]:
    return config("email", "", port=port, ca_file=str(tls.ca_cert), **extra)


async def test_one_thread_per_incident(smtp: tuple[int, MailHandler, Authenticator],
                                       tls_material: TLSMaterial, ctx: SinkBuildContext) -> None:
    port, handler, _ = smtp
    sink = build_sink("email", mail_config(port, tls_material, to=["a@x.example",
                                                                    "b@x.example"]), ctx)
    incident = make_incident()
    ref = await sink.open(incident)
    await sink.update(ref, incident, event(EventKind.ESCALATED, "Escalated to L1"))
    await sink.resolve(ref, resolved(incident))

    first, update, done = handler.messages
    first_id = str(first["Message-ID"]).strip()
    assert ref.external_id == first_id == ref.extra["message_id"]
    assert first_id.endswith("@agency.example>")
    assert first["Subject"] == incident.title
    assert first["From"] == "storewatch@agency.example"
    assert first["To"] == "a@x.example, b@x.example"
    assert first["In-Reply-To"] is None
    for message in (first, update, done):
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["X-Storewatch-Incident"] == FINGERPRINT
        assert message["Date"] is not None
    for message in (update, done):
        assert str(message["In-Reply-To"]).strip() == first_id
        assert str(message["References"]).strip() == first_id
        assert str(message["Message-ID"]).strip() != first_id
    assert update["Subject"] == f"Re: {incident.title}"
    assert done["Subject"] == f"[RESOLVED] {incident.title}"
    text = [m.get_content().replace("\r\n", "\n") for m in (first, update, done)]
    assert text[0] == incident.body + "\n"
    assert text[1] == f"Escalated to L1\n\n{incident.body}\n"
    assert text[2].startswith("Recovered at 2026-03-01T10:07:00Z after 7m "
         "(opened 2026-03-01T10:00:00Z, 3 failing runs).")


@pytest.mark.parametrize(("where", "reply", "error"), [
    pytest.param("rcpt", "450 4.2.1 Mailbox busy", RetryableSinkError, id="rcpt-450"),
    pytest.param("rcpt", "550 5.1.1 No such user", PermanentSinkError, id="rcpt-550"),
    pytest.param("data", "451 4.3.0 Try again later", RetryableSinkError, id="data-451"),
    pytest.param("data", "554 5.7.1 Rejected as spam", PermanentSinkError, id="data-554"),
])
async def test_smtp_4xx_is_retryable_and_5xx_permanent(
        where: str, reply: str, error: type[SinkError],
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext) -> None:
    port, handler, _ = smtp
    setattr(handler, f"{where}_reply", reply)
    sink = build_sink("email", mail_config(port, tls_material), ctx)
    with pytest.raises(SinkError) as raised:
        await sink.open(make_incident())
    assert type(raised.value) is error
    assert reply.split(" ", 1)[1] in str(raised.value)
    assert str(raised.value).startswith("mail: send: ")
    assert await sink.find(make_incident()) is None  # nothing was sent: nothing noted


async def test_a_wrong_password_is_permanent_and_never_shown(
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port, handler, auth = smtp
    wrong = "wrong-" + CANARY
    sink = build_sink("email", mail_config(port, tls_material, password=wrong), ctx)
    with pytest.raises(PermanentSinkError, match="SMTP 535") as raised:
        await sink.open(make_incident())
    assert auth.failures >= 1 and handler.messages == []  # smtplib tries PLAIN, then LOGIN
    assert wrong not in str(raised.value) and wrong not in caplog.text


async def test_an_untrusted_certificate_is_permanent(
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext) -> None:
    port, handler, _ = smtp
    cfg = mail_config(port, tls_material)
    del cfg["ca_file"]
    sink = build_sink("email", cfg, ctx)
    with pytest.raises(PermanentSinkError, match="TLS certificate verify failed"):
        await sink.open(make_incident())
    assert handler.messages == []


async def test_no_server_is_retryable(tls_material: TLSMaterial, ctx: SinkBuildContext) -> None:
    sink = build_sink("email", mail_config(await free_port(), tls_material), ctx)
    with pytest.raises(RetryableSinkError, match=r"mail: send: 127.0.0.1:\d+: "
                                                 "ConnectionRefusedError"):
        await sink.open(make_incident())


async def test_a_server_that_never_greets_is_a_retryable_timeout(
        tls_material: TLSMaterial, ctx: SinkBuildContext) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never sends a 220 greeting
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sink = build_sink("email", mail_config(port, tls_material, timeout="300ms"), ctx)
        with pytest.raises(RetryableSinkError, match="timed out"):
            await sink.open(make_incident())
    finally:
        server.close()
        await server.wait_closed()


async def test_find_after_a_crash_reads_the_noted_thread(
        smtp: tuple[int, MailHandler, Authenticator], tls_material: TLSMaterial,
        ctx: SinkBuildContext) -> None:
    port, handler, _ = smtp
    cfg = mail_config(port, tls_material)
    ref = await build_sink("email", cfg, ctx).open(make_incident())
    restarted = build_sink("email", cfg, ctx)
    assert await restarted.find(make_incident()) == ref
    assert await restarted.find(make_incident(id=99)) is None  # a later incident, same key
    note = ctx.state_dir / "sinks" / "mail" / f"{FINGERPRINT}.json"
    assert note.is_file()
    await restarted.resolve(ref, resolved(make_incident()))
    assert not note.exists()
    assert len(handler.messages) == 2
