"""Every sink next to its tracker (respx fake or real loopback server), behind one interface,
for the shared contract suite."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from agent.sinks import sink_factory, sink_model
from agent.sinks.base import SinkBuildContext, TicketSink
from tests.agent.sinks import fakes
from tests.agent.sinks.incidents import OPENED
from tests.agent.sinks.receivers import Reply, smtp_server, webhook_receiver
from tests.conftest import TLSMaterial

CANARY = ("canary-" + "7f3a9c0bQx" * 4)[:32]
"""The secret of every sink in the contract suite (32 characters: a valid PagerDuty key)."""
USER = "ops@acme.example"
NOW = OPENED + timedelta(minutes=10)
HTTP_SINKS = ["webhook", "jira", "redmine", "zendesk", "github", "pagerduty", "alertmanager"]
ALL_SINKS = [*HTTP_SINKS, "email"]
SEARCHABLE = {"jira", "redmine", "zendesk", "github", "email"}
"""Sinks whose ``find`` answers; the others are idempotent by key (same key, same ticket)."""


@dataclass
class Fail:
    """A failure to inject: an HTTP status (with headers) or no answer in time."""

    status: int | None = None
    headers: dict[str, str] | None = None
    accept: bool = False
    """With no status: the tracker carries the request out, then never answers (the duplicate
    trap)."""

    @property
    def timeout(self) -> bool:
        """No answer within the sink's deadline."""
        return self.status is None


@dataclass
class Harness:
    """A sink, a way to rebuild it (a restart), and the tracker's view of its tickets."""

    name: str
    build: Callable[[], TicketSink]
    tickets: Callable[[], dict[str, str]]
    """Ticket id → ``open``/``resolved`` as the tracker sees it."""
    updates: Callable[[str], int]
    """How many updates the ticket got."""
    fail_next: Callable[[Fail], None]
    secrets: tuple[str, ...]
    """The secret in every form it may travel in (raw, inside Basic auth)."""
    requests: Callable[[], list[str]]
    """Every request URL the tracker saw."""


def config(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A valid config of sink ``name`` pointing at ``url`` with ``CANARY`` as its secret."""
    base: dict[str, dict[str, Any]] = {
        "webhook": {"url": url, "secret": CANARY},
        "jira": {"url": url, "email": USER, "api_token": CANARY, "project": "OPS"},
        "redmine": {"url": url, "api_key": CANARY, "project": "shop-ops", "dedup_field_id": 7},
        "zendesk": {"url": url, "email": USER, "api_token": CANARY},
        "github": {"url": url, "repo": fakes.FakeGitHub.repo, "token": CANARY},
        "pagerduty": {"url": f"{url}/v2/enqueue", "routing_key": CANARY},
        "alertmanager": {"urls": [url], "bearer_token": CANARY},
        "email": {"host": "127.0.0.1", "port": 25, "sender": "storewatch@agency.example",
                  "to": ["oncall@agency.example"], "username": USER, "password": CANARY},
    }
    return {"type": name, "timeout": 0.5, **base[name], **extra}


def build_sink(name: str, cfg: dict[str, Any], ctx: SinkBuildContext, **kw: Any) -> TicketSink:
    """Validate ``cfg`` with the registered model and build the sink."""
    model, factory = sink_model(name), sink_factory(name)
    return factory(model.model_validate(cfg), ctx, **kw)  # type: ignore[call-arg]


def _basic(user: str) -> str:
    return base64.b64encode(f"{user}:{CANARY}".encode()).decode()


@asynccontextmanager
async def harness(name: str, http: httpx.AsyncClient, state_dir: Path,
                  tls: TLSMaterial | None = None) -> AsyncIterator[Harness]:
    """Sink ``name`` wired to its tracker."""
    ctx = SinkBuildContext(name=f"{name}-main", http_factory=lambda: http, state_dir=state_dir,
                           user_agent="storewatch-test")
    async with AsyncExitStack() as stack:
        if name == "webhook":
            url, receiver = await stack.enter_async_context(
                webhook_receiver(CANARY, NOW.timestamp()))
            cfg = config(name, url)

            def hook_tickets() -> dict[str, str]:
                return {k: v["status"].replace("firing", "open")
                        for k, v in receiver.incidents().items()}

            def hook_fail(fail: Fail) -> None:
                receiver.replies.append(Reply(status=fail.status or 200,
                                              headers=fail.headers or {},
                                              stall=1.5 if fail.timeout else 0,
                                              accept=fail.accept))

            yield Harness(
                name, lambda: build_sink(name, cfg, ctx, clock=lambda: NOW), hook_tickets,
                lambda key: len(receiver.incidents()[key]["events"]) - 1, hook_fail,
                (CANARY,), lambda: [url] * len(receiver.deliveries))
            return
        if name == "email":
            assert tls is not None
            port, mail, _ = await stack.enter_async_context(
                smtp_server(str(tls.leaf_cert), str(tls.leaf_key), USER, CANARY))
            cfg = config(name, "", port=port, ca_file=str(tls.ca_cert))

            def threads() -> dict[str, list[Any]]:
                out: dict[str, list[Any]] = {}
                for message in mail.messages:
                    thread = str(message.get("References") or message["Message-ID"])
                    out.setdefault(thread.strip(), []).append(message)  # unfolded
                return out

            def mail_tickets() -> dict[str, str]:
                return {k: "resolved" if str(v[-1]["Subject"]).startswith("[RESOLVED]")
                        else "open" for k, v in threads().items()}

            def mail_fail(fail: Fail) -> None:
                raise AssertionError("e-mail failures are SMTP codes: see test_email.py")

            yield Harness(name, lambda: build_sink(name, cfg, ctx), mail_tickets,
                          lambda key: len(threads()[key]) - 1, mail_fail, (CANARY,),
                          lambda: [])
            return
        fake: fakes.FakeTracker = {
            "jira": fakes.FakeJira, "redmine": fakes.FakeRedmine, "zendesk": fakes.FakeZendesk,
            "github": fakes.FakeGitHub, "pagerduty": fakes.FakePagerDuty,
            "alertmanager": lambda: fakes.FakeAlertmanager(lambda: NOW),
        }[name]()
        stack.enter_context(fake.router)
        cfg = config(name, fake.base_url)
        kw: dict[str, Any] = {"clock": lambda: NOW} if name == "alertmanager" else {}

        def fake_fail(fail: Fail) -> None:
            if fail.accept:
                fake.fail_next(fakes.AcceptThenTimeout())
                return
            fake.fail_next(fakes.timeout if fail.timeout
                           else fakes.status(fail.status or 500, fail.headers))

        def ticket_id(key: str, ticket: fakes.Ticket) -> str:
            # Alertmanager knows alerts by label set; the sink's ticket id is the incident label
            return str(ticket.data["labels"]["incident"]) if name == "alertmanager" else key

        def fake_tickets() -> dict[str, str]:
            return {ticket_id(k, t): t.state for k, t in fake.tickets.items()
                    if not t.data.get("pull_request")}

        def fake_updates(wanted: str) -> int:
            return sum(len(t.comments) for k, t in fake.tickets.items()
                       if ticket_id(k, t) == wanted)

        yield Harness(
            name, lambda: build_sink(name, cfg, ctx, **kw), fake_tickets, fake_updates,
            fake_fail,
            (CANARY, _basic(USER), _basic(f"{USER}/token")),
            lambda: [str(r.url) for r in fake.requests])
