"""Real loopback servers the webhook and e-mail sinks deliver to in tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from agent.sinks.webhook import SIGNATURE_HEADER, signing_key
from tests.agent.servers import serve


@dataclass
class Reply:
    """What the receiver answers instead of accepting (status, headers), or a stall."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0
    accept: bool = False
    """Keep the event as a good delivery would, then stall (the duplicate trap)."""


class WebhookReceiver:
    """Verifies both signatures the way a receiver would, then keeps the event."""

    def __init__(self, secret: str, now: float) -> None:
        self.key = signing_key(secret)
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.rejected: list[str] = []
        self.replies: list[Reply] = []

    def verify(self, headers: dict[str, str], raw: bytes) -> str | None:
        """Why the delivery is not authentic, or None."""
        msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        if not msg_id or not stamp.isdigit() or abs(int(stamp) - self.now) > 300:
            return "bad id or timestamp"
        expected = base64.b64encode(hmac.new(
            self.key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()).decode()
        offered = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()
                   if s.startswith("v1,")]
        if not any(hmac.compare_digest(expected, s) for s in offered):
            return "bad webhook-signature"
        body_mac = "sha256=" + hmac.new(self.key, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(body_mac, headers.get(SIGNATURE_HEADER.lower(), "")):
            return f"bad {SIGNATURE_HEADER}"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        """POST /hook."""
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.deliveries.append((headers, raw))
        if self.replies:
            reply = self.replies.pop(0)
            if reply.accept and self.verify(headers, raw) is None:
                self.events.append(json.loads(raw))
            if reply.stall:
                await asyncio.sleep(reply.stall)
            echo = json.dumps({"body": raw.decode(errors="replace"), "headers": headers})
            return web.Response(status=reply.status, headers=reply.headers, text=echo)
        problem = self.verify(headers, raw)
        if problem:
            self.rejected.append(problem)
            return web.Response(status=401, text=problem)
        self.events.append(json.loads(raw))
        return web.Response(status=204)

    def incidents(self) -> dict[str, dict[str, Any]]:
        """Per incident_key: last status and the events seen, as a receiver would track."""
        out: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for event in self.events:
            if event["event_id"] in seen:  # a redelivery
                continue
            seen.add(event["event_id"])
            state = out.setdefault(event["incident_key"], {"events": []})
            state["status"] = event["status"]
            state["events"].append(event["event"])
        return out


@asynccontextmanager
async def webhook_receiver(secret: str, now: float) -> AsyncIterator[tuple[str, WebhookReceiver]]:
    """A receiver on loopback; yields (URL, receiver)."""
    receiver = WebhookReceiver(secret, now)
    async with serve({"/hook": receiver.handle}) as base:
        yield f"{base}/hook", receiver


class MailHandler:
    """Keeps accepted messages; ``rcpt_reply``/``data_reply`` force an SMTP answer."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        assert session.authenticated, "accepted mail without AUTH"
        assert session.ssl is not None, "accepted mail without TLS"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        self.messages.append(message_from_bytes(content, policy=policy.default))
        return "250 Message accepted for delivery"


class Authenticator:
    """One login; remembers failed attempts."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()
        self.failures = 0

    def __call__(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user
              and auth_data.password == self.password)
        self.failures += not ok
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def smtp_server(cert: str, key: str, user: str, password: str
                      ) -> AsyncIterator[tuple[int, MailHandler, Authenticator]]:
    """A real SMTP server on loopback requiring STARTTLS then AUTH; yields (port, ...)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler, auth = MailHandler(), Authenticator(user, password)
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(),
                            tls_context=context, require_starttls=True,
                            authenticator=auth, auth_required=True, auth_require_tls=True,
                            ready_timeout=5)
    await asyncio.to_thread(controller.start)
    try:
        yield controller.port, handler, auth
    finally:
        await asyncio.to_thread(controller.stop)
