"""E-mail over SMTP (submission with STARTTLS and AUTH): one thread per incident.

The first message's ``Message-ID`` is the ticket id (``TicketRef.extra``: ``message_id``,
``subject``); updates and the resolution reply to it (``In-Reply-To``/``References``, subject
``Re: ...`` and ``[RESOLVED] ...``). Every message has ``Auto-Submitted: auto-generated``
(RFC 3834) and ``X-Storewatch-Incident: <fingerprint>``. SMTP replies 4xx are retryable, 5xx
permanent. Mail has no delivery-side dedup, so after a successful send the thread is noted in
``<state_dir>/sinks/<name>/<fingerprint>.json``; ``find`` reads it back after a crash.

Why ``smtplib`` in a worker thread rather than aiosmtplib: the standard library's client is
complete (STARTTLS, AUTH, reply codes as exceptions), adds no runtime dependency, and a sink
sends a handful of messages per incident; each SMTP command is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError
from agent.sinks.attachments import evidence_attachments
from agent.sinks.base import (
    IncidentView,
    SinkBuildContext,
    TicketEvent,
    TicketRef,
)
from agent.sinks.render import resolution_text
from agent.sinks.settings import SinkSettings, reveal

log = logging.getLogger("agent.sinks")

Address = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]


class EmailConfig(SinkSettings):
    """``type: email``: an SMTP submission server."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """``starttls`` (port 587), ``tls`` (implicit TLS, port 465) or ``none`` (no password)."""
    username: str | None = None
    password: Annotated[SecretStr, Field(min_length=1)] | None = None
    sender: Address
    to: list[Address] = Field(min_length=1)
    ca_file: Path | None = None
    """CA bundle for the server's certificate (default: the system's)."""
    verify: bool = True

    @model_validator(mode="after")
    def _auth(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and self.security == "none":
            raise ValueError("refusing to send a password without TLS: use security: starttls")
        return self


class EmailSink:
    """Tickets as e-mail threads."""

    def __init__(self, name: str, config: EmailConfig, journal_dir: Path,
                 password: str | None) -> None:
        self.name = name
        self.config = config
        self.journal_dir = journal_dir
        self._password = password
        self._tls: ssl.SSLContext | None = None
        self.domain = config.sender.rpartition("@")[2]

    # ------------------------------------------------------------------ TicketSink

    async def find(self, incident: IncidentView) -> TicketRef | None:
        """The thread noted for this incident by an earlier successful send, if any."""
        path = self._journal(incident)
        try:
            note = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(note, dict) or note.get("incident_id") != incident.id:
            return None
        return self._ref(str(note["message_id"]), str(note["subject"]))

    async def open(self, incident: IncidentView) -> TicketRef:
        """Send the first message of the thread (with a browser check's screenshot and log)."""
        message = self._message(incident.title, incident.body, incident)
        for file in evidence_attachments(incident.evidence):
            maintype, subtype = file.mime.split("/")
            message.add_attachment(file.data, maintype=maintype, subtype=subtype,
                                   filename=file.filename)
        ref = self._ref(str(message["Message-ID"]), incident.title)
        await asyncio.to_thread(self._send, message, "send", lambda: self._note(incident, ref))
        return ref

    async def update(self, ref: TicketRef, incident: IncidentView, event: TicketEvent) -> None:
        """Reply in the thread with the event's text."""
        subject = "Re: " + ref.extra.get("subject", incident.title)
        message = self._message(subject, f"{event.text}\n\n{incident.body}", incident, ref)
        await asyncio.to_thread(self._send, message, "send update", None)

    async def resolve(self, ref: TicketRef, incident: IncidentView) -> None:
        """Reply with the recovery; forget the noted thread."""
        subject = "[RESOLVED] " + ref.extra.get("subject", incident.title)
        message = self._message(subject, f"{resolution_text(incident)}\n\n{incident.body}",
                                incident, ref)
        await asyncio.to_thread(self._send, message, "send resolution",
                                lambda: self._journal(incident).unlink(missing_ok=True))

    # ------------------------------------------------------------------ helpers

    def _ref(self, message_id: str, subject: str) -> TicketRef:
        return TicketRef(self.name, message_id,
                         extra={"message_id": message_id, "subject": subject})

    def _journal(self, incident: IncidentView) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", incident.fingerprint)
        return self.journal_dir / f"{safe}.json"

    def _note(self, incident: IncidentView, ref: TicketRef) -> None:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        path = self._journal(incident)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"incident_id": incident.id, **ref.extra}))
        os.replace(tmp, path)

    def _message(self, subject: str, body: str, incident: IncidentView,
                 thread: TicketRef | None = None) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.config.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(idstring="storewatch", domain=self.domain)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Storewatch-Incident"] = incident.fingerprint
        if thread is not None:
            first = thread.extra.get("message_id", thread.external_id)
            message["In-Reply-To"] = first
            message["References"] = first
        message.set_content(body)
        return message

    def _send(self, message: EmailMessage, action: str,
              after: Callable[[], None] | None) -> None:
        """Deliver ``message`` (runs in a worker thread); SMTP failures become SinkErrors."""
        cfg = self.config
        what = f"{self.name}: {action}"
        if self._tls is None and cfg.security != "none":
            try:
                self._tls = _tls_context(cfg)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentSinkError(scrub(f"{what}: cannot load ca_file: {exc}")) from None
        try:
            smtp: smtplib.SMTP
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                        context=self._tls)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            with smtp:
                smtp.ehlo()
                if cfg.security == "starttls":
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if cfg.username is not None and self._password is not None:
                    smtp.login(cfg.username, self._password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{addr}: {code} {_text(reply)}"
                             for addr, (code, reply) in exc.recipients.items())
            error = f"{what}: every recipient refused: {text}"
            if codes and all(400 <= code < 500 for code in codes):
                raise RetryableSinkError(scrub(error)) from None
            raise PermanentSinkError(scrub(error)) from None
        except smtplib.SMTPResponseException as exc:
            error = f"{what}: SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                raise RetryableSinkError(scrub(error)) from None
            raise PermanentSinkError(scrub(error)) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentSinkError(scrub(f"{what}: {exc}")) from None
        except smtplib.SMTPException as exc:
            raise RetryableSinkError(scrub(f"{what}: {type(exc).__name__}: {exc}")) from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentSinkError(scrub(
                f"{what}: TLS certificate verify failed: {exc.verify_message}")) from None
        except (OSError, TimeoutError) as exc:
            raise RetryableSinkError(scrub(
                f"{what}: {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}")) from None
        for addr, (code, reply) in refused.items():
            log.warning("%s", scrub(f"{what}: recipient {addr} refused: {code} {_text(reply)}"))
        if after is not None:
            try:
                after()
            except OSError as exc:  # the mail is out; only the crash guard is missing
                log.warning("%s", scrub(f"{what}: cannot note the thread in "
                                        f"{self.journal_dir}: {exc}"))


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(scrub(text).split())[:200]  # scrubbed before a secret could be cut


def _tls_context(config: EmailConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(config.ca_file) if config.ca_file is not None else None)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def build(config: EmailConfig, ctx: SinkBuildContext) -> EmailSink:
    """The e-mail sink for ``config``."""
    password = reveal(config.password) if config.password is not None else None
    return EmailSink(ctx.name, config, ctx.state_dir / "sinks" / ctx.name, password)


CONFIG = EmailConfig
"""This sink's config model (see ``agent.sinks.SINKS``)."""
