"""A canary secret for every sink, every sink failing: the canary reaches the trackers (as their
credentials) and nothing else — no log line, ticket, metric, exception, CLI output or byte of
the state directory.

The daemon is a real ``storewatch run`` subprocess; its secrets come from ``${VAR}`` (a name
that does not look secret, so only the sinks' own registration protects it) and ``${cred:NAME}``
(a systemd credentials directory). The trackers are one real loopback server that answers
every request with 500 or 401 and echoes the request's headers and body in its error page
(like a verbose proxy), and a real SMTP server that refuses the login.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent.demo.storefront import DemoStore
from tests.agent.servers import serve
from tests.agent.sinks.receivers import smtp_server
from tests.agent.test_incidents_e2e import Daemon, daemon, query, wait_for, write_config
from tests.conftest import TLSMaterial, storewatch

__all__ = ["daemon"]  # the fixture, shared with the end-to-end tests

USER = "ops@acme.example"
SINKS = ["hook", "jira", "redmine", "zendesk", "github", "pagerduty", "alertmanager", "mail"]


class EchoingTracker:
    """Every tracker API at once: answers 500 and 401 in turn, echoing the request."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        # credentials first: they must be masked even within the first 200 characters
        common = {"host", "accept", "accept-encoding", "connection", "user-agent",
                  "content-length", "content-type"}
        headers = sorted(request.headers.items(), key=lambda kv: kv[0].lower() in common)
        echo = json.dumps({"headers": dict(headers), "body": raw.decode(errors="replace"),
                           "path": request.path_qs})
        self.seen.append(echo.encode())
        status = 500 if len(self.seen) % 2 else 401
        return web.Response(status=status, text=echo, content_type="application/json",
                            headers={"Retry-After": "1"} if status == 500 else {})


def forms(canary: str) -> list[bytes]:
    """The canary in every form it travels in: raw and inside HTTP Basic credentials."""
    basics = [base64.b64encode(f"{user}:{canary}".encode()) for user in (USER, f"{USER}/token")]
    return [canary.encode(), *basics]


def windows(data: bytes, size: int = 10) -> set[bytes]:
    return {data[i:i + size] for i in range(len(data) - size + 1)}


def fragments(canary: str) -> set[bytes]:
    """Every 10-byte piece of a form that depends on the canary: a cut-off secret (e.g. an
    error text truncated in the middle of a credential) is a leak too."""
    other = "x" * len(canary)
    return set().union(*(windows(f) - windows(o)
                         for f, o in zip(forms(canary), forms(other), strict=True)))


def leaks(data: bytes, *canaries: str) -> list[bytes]:
    """The pieces of the canaries found in ``data``."""
    return sorted(f for c in canaries for f in fragments(c) if f in data)


async def test_the_canary_reaches_the_trackers_and_nothing_else(
        store: DemoStore, tmp_path: Path, daemon: Callable[[Path], Daemon],
        tls_material: TLSMaterial, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "cnry" + secrets.token_hex(14)  # 32 characters: also a valid PagerDuty key
    header = "hdr-" + secrets.token_hex(14)  # the webhook's extra header: a second canary
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "canary").write_text(canary + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "TRACKER_CANARY": canary, "HOOK_AUTH": header}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracker = EchoingTracker()
    store.set_faults(["server_error"])
    async with serve({"/{tail:.*}": tracker.handle}) as base, smtp_server(
            str(tls_material.leaf_cert), str(tls_material.leaf_key), USER,
            "not-the-canary") as (smtp_port, mail, auth):
        extra = f"""\
            incidents:
              confirm_l1: 1
              confirm: 1
            sinks:
              hook: {{type: webhook, url: "{base}/hook", secret: "${{cred:canary}}",
                      headers: {{X-Hook-Auth: "${{HOOK_AUTH}}"}}, timeout: 2s}}
              jira: {{type: jira, url: "{base}", email: {USER}, api_token: "${{TRACKER_CANARY}}",
                      project: OPS, timeout: 2s}}
              redmine: {{type: redmine, url: "{base}", api_key: "${{cred:canary}}",
                         project: shop-ops, dedup_field_id: 7, timeout: 2s}}
              zendesk: {{type: zendesk, url: "{base}", email: {USER},
                         api_token: "${{TRACKER_CANARY}}", timeout: 2s}}
              github: {{type: github, url: "{base}", repo: acme/shop-ops,
                        token: "${{cred:canary}}", timeout: 2s}}
              pagerduty: {{type: pagerduty, url: "{base}/v2/enqueue",
                           routing_key: "${{TRACKER_CANARY}}", timeout: 2s}}
              alertmanager: {{type: alertmanager, urls: ["{base}"],
                              bearer_token: "${{cred:canary}}", timeout: 2s}}
              mail: {{type: email, host: 127.0.0.1, port: {smtp_port},
                      sender: storewatch@agency.example, to: [oncall@agency.example],
                      username: {USER}, password: "${{TRACKER_CANARY}}",
                      ca_file: "{tls_material.ca_cert}", timeout: 2s}}
            routing:
              - sinks: [{", ".join(SINKS)}]
            """
        config = write_config(tmp_path, store.url, interval=0.5, extra=textwrap.dedent(extra))
        agent = daemon(config)
        await agent.start()
        log = tmp_path / "daemon.log"
        metrics_url = (await wait_for("the running line", lambda: [
            w for w in log.read_text().split() if w.endswith("/metrics")], 20))[0]

        def every_sink_failed_twice() -> bool:
            rows = query(tmp_path, "SELECT sink, attempts, state FROM outbox")
            failed = {r["sink"] for r in rows if r["state"] == "dead" or r["attempts"] >= 2}
            return failed >= set(SINKS)

        await wait_for("every sink failing", every_sink_failed_twice, 30)
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(metrics_url)).content
        await agent.kill(signal.SIGTERM)
        assert auth.failures >= 1  # the SMTP server saw (and refused) the login
        assert mail.messages == []

    # the canary did travel: to the trackers, as their credentials
    sent = b"".join(tracker.seen)
    assert leaks(sent, canary), "the trackers never got the canary: the test would prove nothing"
    assert leaks(sent, header), "the webhook never sent its header"
    # ... and nowhere else
    cli = tmp_path / "cli.txt"
    outputs = {
        "check --json": storewatch("check", "--json", "-c", str(config), env=env),
        "validate": storewatch("validate", "-c", str(config), env=env),
        "incidents list": storewatch("incidents", "list", "--json", "-c", str(config), env=env),
        "tickets list": storewatch("tickets", "list", "--json", "-c", str(config), env=env),
    }
    for name, proc in outputs.items():
        assert proc.returncode in (0, 1), (name, proc.stderr)
        cli.write_text(proc.stdout + proc.stderr)
        assert leaks(cli.read_bytes(), canary, header) == [], name
    assert json.loads(outputs["tickets list"].stdout)["dead_letters"]  # the 401s
    assert json.loads(outputs["incidents list"].stdout)["incidents"]
    log_bytes = log.read_bytes()
    assert b"dead letter" in log_bytes and b"retrying" in log_bytes
    assert leaks(log_bytes, canary, header) == [], "daemon log"
    assert b"Traceback" not in log_bytes
    assert leaks(scraped, canary, header) == [], "/metrics"
    state_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.name == "storewatch.db" for p in state_files)
    for path in state_files:
        assert leaks(path.read_bytes(), canary, header) == [], path
    errors = [r["last_error"] for r in query(tmp_path, "SELECT last_error FROM outbox")]
    assert any(e and "***" in e for e in errors)  # the echoed credentials, masked
    await asyncio.sleep(0)


# --- a shop that echoes the canary back in other encodings -----------------------------------

def encodings(secret: str) -> dict[str, str]:
    """The canary as shops, proxies and frameworks echo it: URL, JSON, HTML, base64 forms."""
    import html
    from urllib.parse import quote, quote_plus

    raw = secret.encode()
    b64, b64url = base64.b64encode, base64.urlsafe_b64encode
    return {
        "percent-20": quote(secret, safe=""),
        "percent-plus": quote_plus(secret, safe=""),
        "percent-keep-slash": quote(secret),
        "json": json.dumps(secret),
        "json-php": json.dumps(secret).replace("/", "\\/"),
        "html": html.escape(secret),
        "html-decimal": html.escape(secret).replace("&quot;", "&#34;").replace("&#x27;", "&#39;"),
        "base64": b64(raw).decode(),
        "base64url": b64url(raw).decode(),
        "basic": b64(f"{USER}:".encode() + raw).decode(),
        "basic-url": b64url(b"mon:" + raw).decode(),
    }


def encoded_fragments(secret: str) -> set[bytes]:
    other = "x" * len(secret)
    theirs, twins = encodings(secret), encodings(other)
    return set().union(*(windows(theirs[k].encode()) - windows(twins[k].encode())
                         for k in theirs))


def encoded_leaks(data: bytes, secret: str) -> list[bytes]:
    return sorted(f for f in encoded_fragments(secret) | fragments(secret) if f in data)


class EchoingShop:
    """Redirects every page to /login with the Authorization header URL-encoded in the query
    (``?auth=Bearer+...``), and /login answers 500 echoing the canary in one encoding."""

    def __init__(self, canary: str) -> None:
        self.forms = encodings(canary)
        self.hooks: list[bytes] = []

    async def page(self, request: web.Request) -> web.StreamResponse:
        from urllib.parse import quote_plus

        name = request.match_info["name"]
        auth = quote_plus(request.headers.get("Authorization", ""))
        raise web.HTTPFound(f"/login/{name}?auth={auth}")

    async def login(self, request: web.Request) -> web.Response:
        form = self.forms[request.match_info["name"]]
        return web.Response(status=500, text=f"<p>bad credentials {form}</p><p>{request.path_qs}"
                            "</p>", content_type="text/html")

    async def hook(self, request: web.Request) -> web.Response:
        self.hooks.append(await request.read())
        return web.Response(status=200, text="ok")


async def test_a_canary_echoed_in_any_encoding_is_masked_everywhere(
        tmp_path: Path, daemon: Callable[[Path], Daemon],
        monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "cnry " + secrets.token_hex(10) + " /+=\"<&'z"  # every encoding treats it differently
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "canary").write_text(canary + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    shop = EchoingShop(canary)
    async with serve({"/enc/{name}": shop.page, "/login/{name}": shop.login,
                      "/hook": shop.hook}) as base:
        checks = "".join(
            f"""
                  - name: {name}
                    path: /enc/{name}
                    headers: {{Authorization: "Bearer ${{cred:canary}}"}}"""
            for name in shop.forms)
        config = tmp_path / "config.yaml"
        config.write_text(textwrap.dedent(f"""\
            agent: {{listen: "127.0.0.1:0", state_dir: "{tmp_path / 'state'}", jitter: 0}}
            defaults: {{interval: 1s, timeout: 0.8s}}
            incidents: {{confirm_l1: 1, confirm: 1}}
            sites:
              - name: shop
                base_url: {base}
                checks:""") + checks + textwrap.dedent(f"""
            sinks:
              hook: {{type: webhook, url: "{base}/hook", secret: whsec-not-the-canary-0123,
                      timeout: 2s}}
            routing:
              - sinks: [hook]
            """))
        agent = daemon(config)
        await agent.start()
        log = tmp_path / "daemon.log"
        metrics_url = (await wait_for("the running line", lambda: [
            w for w in log.read_text().split() if w.endswith("/metrics")], 20))[0]
        await wait_for("a webhook per encoding",
                       lambda: len(shop.hooks) >= len(shop.forms), 40)
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(metrics_url)).content
        await agent.kill(signal.SIGTERM)
        check = await asyncio.to_thread(storewatch, "check", "--json", "-c", str(config),
                                        env=env)
    assert check.returncode == 1, check.stderr
    results = json.loads(check.stdout)["results"]
    evidence = [f["evidence"] for r in results for f in r["findings"]]
    assert len(evidence) == len(shop.forms)
    assert all("/login/" in e["url"] and "***" in e["url"] for e in evidence)  # the redirect
    assert all("***" in e["excerpt"] for e in evidence)  # the echo
    incidents = storewatch("incidents", "list", "--json", "-c", str(config), env=env)
    ids = [i["id"] for i in json.loads(incidents.stdout)["incidents"]]
    assert len(ids) == len(shop.forms)
    shown = [storewatch("incidents", "show", str(i), "--json", "-c", str(config), env=env)
             for i in ids]
    outputs: dict[str, bytes] = {
        "check --json": (check.stdout + check.stderr).encode(),
        "incidents list": incidents.stdout.encode(),
        "incidents show": "".join(s.stdout for s in shown).encode(),
        "daemon log": log.read_bytes(),
        "webhook bodies": b"\n".join(shop.hooks),
        "/metrics": scraped,
    }
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes()
    assert any(b"***" in body for body in shop.hooks)
    for name, data in outputs.items():
        assert encoded_leaks(data, canary) == [], name
