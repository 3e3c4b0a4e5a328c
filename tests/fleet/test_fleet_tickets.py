"""Three real agents on one store against the demo store: one incident and one ticket per sink
across the fleet, and exactly-once delivery while the agent holding an outbox claim is killed
mid-delivery, again and again."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from typing import Any

import pytest
from aiohttp import web

from agent.demo.storefront import DemoStore
from tests.agent.servers import serve
from tests.conftest import storewatch
from tests.fleet.conftest import BACKENDS, Fleet, SharedState, wait_for

CHECKS = textwrap.dedent("""\
    defaults:
      interval: 1s
      timeout: 0.8s
    sites:
      - name: demo
        base_url: {url}
        checks:
          - name: home
            path: /
          - name: checkout
            type: checkout
            vars: {{sku: DS-TEST-SKU}}
            steps:
              - name: product-page
                path: /product/demo-test-product
                extract:
                  form_key: {{css: "input[name=form_key]", attribute: value}}
              - name: add-to-cart
                method: POST
                path: /cart/add
                form: {{form_key: "{{{{form_key}}}}", sku: "{{{{sku}}}}", qty: "1"}}
                expect:
                  count: [{{css: "tr.cart-item[data-sku='DS-TEST-SKU']", min: 1}}]
    """)


class Tracker:
    """A webhook receiver that counts accepted events; while ``stall`` is set it holds each
    request unanswered until its sender goes away (a tracker that hangs)."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.stall = False
        self.stalled = 0
        """Requests held while stalling (their sender died or gave up)."""
        self.held = 0
        """Requests being held right now."""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.stall:
            self.stalled += 1
            self.held += 1
            try:
                while self.stall and request.transport is not None \
                        and not request.transport.is_closing():
                    await asyncio.sleep(0.02)
            finally:
                self.held -= 1
            if not self.stall:
                return web.Response(status=503, text="try again")
            return web.Response(status=499)
        self.accepted.append(json.loads(raw))
        return web.Response(status=204)

    def opened(self) -> list[dict[str, Any]]:
        return [e for e in self.accepted if e["event"] == "opened"]


def sinks(hook: str, delivery_timeout: str = "3s") -> str:
    return textwrap.dedent(f"""\
    incidents:
      delivery_timeout: {delivery_timeout}
    sinks:
      local: {{type: sqlite}}
      hook: {{type: webhook, url: "{hook}/hook", secret: fleet-hook-secret-0123, timeout: 30s}}
    routing:
      - sinks: [local, hook]
    """)


@pytest.mark.parametrize("state", BACKENDS, indirect=True)
async def test_a_fault_seen_by_three_agents_is_one_incident_with_one_ticket_per_sink(
        store: DemoStore, state: SharedState, fleet: Any) -> None:
    tracker = Tracker()
    async with serve({"/hook": tracker.handle}) as hook:
        agents: Fleet = fleet(CHECKS.format(url=store.url) + sinks(hook))
        await agents.start()
        store.set_faults(["checkout"])
        await wait_for("the ticket in both sinks", lambda: state.query(
            "SELECT 1 FROM tickets WHERE sink = 'hook'") and state.query(
            "SELECT 1 FROM tickets WHERE sink = 'local'"), 40)
        await wait_for("every agent's failing run", lambda: len(state.query(
            "SELECT 1 FROM location_tracks WHERE state LIKE '%\"phase\": \"open\"%'")) == 3, 30)
        await asyncio.sleep(2)  # more runs of all three agents: still one of each
        store.set_faults([])
        await wait_for("the ticket resolved in both sinks", lambda: len(state.query(
            "SELECT 1 FROM tickets WHERE state = 'resolved'")) == 2, 40)
        await agents.stop()
    incidents = state.query("SELECT id, kind, level, state, locations FROM incidents WHERE "
                            "kind = 'checkout_broken'")
    assert [(i["kind"], i["level"], i["state"]) for i in incidents] == [
        ("checkout_broken", 1, "resolved")]
    assert json.loads(incidents[0]["locations"]) == {"fra": "seen", "nyc": "seen",
                                                     "sgp": "seen"}
    assert len(state.query("SELECT 1 FROM local_tickets")) == 1
    assert [e["incident_id"] for e in tracker.opened()] == [incidents[0]["id"]]
    assert [e["event"] for e in tracker.accepted].count("resolved") == 1
    assert state.query("SELECT 1 FROM outbox WHERE state != 'delivered'") == []
    (body,) = state.query("SELECT body FROM local_tickets")
    assert "seen from: fra, nyc, sgp" in body["body"]


ROUNDS = 20
"""Kills of the claim holder in the middle of one delivery, as the issue asks (each round waits
out one claim lease, 4.5 s here: about 100 s in all). The victim is
restarted only after another agent took its entry over (a restarted agent would take back its
own dead claims at once: tests/fleet/test_outbox_claims.py)."""


@pytest.mark.slow
@pytest.mark.parametrize("state", ["postgresql"], indirect=True)
async def test_killing_the_agent_that_holds_the_claim_mid_delivery_never_loses_or_doubles(
        store: DemoStore, state: SharedState, fleet: Any) -> None:
    tracker = Tracker()
    tracker.stall = True
    async with serve({"/hook": tracker.handle}) as hook:
        agents: Fleet = fleet(CHECKS.format(url=store.url) + sinks(hook, "3s"))
        await agents.start()
        store.set_faults(["checkout"])
        await wait_for("the local ticket", lambda: state.query("SELECT 1 FROM local_tickets"),
                       40)
        killed: list[str] = []
        dead: set[int] = set()

        def live_holder() -> str | None:
            holder = _holder(state)
            if not tracker.held or holder is None or int(holder.partition("/")[2]) in dead:
                return None
            return holder

        down: Any = None  # the last victim: restarted once another agent took over
        for round_ in range(ROUNDS):
            holder = await wait_for(f"round {round_}: a held delivery and its live claim",
                                    live_holder, 30)
            if down is not None:
                await down.start()
            name, _, pid = holder.partition("/")
            dead.add(int(pid))
            victim = agents.by_pid(int(pid))
            assert victim.name == name
            await victim.kill()
            killed.append(name)
            down = victim
        await down.start()
        tracker.stall = False
        await wait_for("the open delivered once", lambda: tracker.opened(), 30)
        store.set_faults([])
        await wait_for("resolved in both sinks", lambda: len(state.query(
            "SELECT 1 FROM tickets WHERE state = 'resolved'")) == 2, 40)
        await agents.stop()
    logs = agents.logs()
    incidents = state.query("SELECT id FROM incidents WHERE kind = 'checkout_broken' AND "
                            "opened_at IS NOT NULL")
    assert len(incidents) == 1
    assert len(killed) == ROUNDS
    assert tracker.stalled >= ROUNDS
    assert [e["incident_id"] for e in tracker.opened()] == [incidents[0]["id"]]
    assert [e["event"] for e in tracker.accepted].count("resolved") == 1
    assert len(state.query("SELECT 1 FROM local_tickets")) == 1
    assert len(state.query("SELECT 1 FROM tickets")) == 2
    assert state.query("SELECT 1 FROM outbox WHERE state != 'delivered'") == []
    # every kill was followed by a take-over: by another agent once the lease ran out (the
    # last victim, restarted at once, may take its own entry back first)
    taken_over = logs.count("ran out; delivering it here")
    assert taken_over >= ROUNDS - 1
    assert taken_over + logs.count("took back 1 ticket action") >= ROUNDS
    print(f"{ROUNDS} claim holders SIGKILLed mid-delivery ({', '.join(killed)}); "
          f"{tracker.stalled} deliveries held; 1 ticket per sink")


def _holder(state: SharedState) -> str | None:
    """Who holds a live claim on the webhook's pending entry."""
    rows = state.query("SELECT claimed_by FROM outbox WHERE sink = 'hook' AND state = "
                       "'pending' AND claimed_by IS NOT NULL AND claim_until > ?",
                       (time.time(),))
    return rows[0]["claimed_by"] if rows else None


HOME_ONLY = textwrap.dedent("""\
    defaults:
      interval: 1s
      timeout: 0.8s
    sites:
      - name: demo
        base_url: {url}
        checks:
          - name: home
            path: /
    incidents:
      min_locations: 2
    sinks:
      local: {{type: sqlite}}
    """)


@pytest.mark.parametrize("state", BACKENDS, indirect=True)
async def test_down_from_one_location_is_unconfirmed_and_from_two_one_l1_ticket(
        store: DemoStore, state: SharedState, fleet: Any) -> None:
    agents: Fleet = fleet(HOME_ONLY.format(url=store.url))
    await agents.start()
    store.set_faults(["down"], agents=["a1"])
    await wait_for("the failure confirmed from fra alone", lambda: state.query(
        "SELECT 1 FROM incidents WHERE kind = 'site_down' AND state = 'pending' AND "
        "unconfirmed = 1"), 30)
    await wait_for("more failing runs from fra, passing ones from nyc and sgp", lambda: len(
        state.query("SELECT 1 FROM location_tracks")) == 3 and _occurrences(state) >= 6, 30)
    assert state.query("SELECT * FROM outbox") == []
    assert state.query("SELECT * FROM local_tickets") == []
    listing = await asyncio.to_thread(storewatch, "incidents", "list", *state.cli_args())
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if "site_down" in line]
    assert row.split()[1] == "unconfirmed"
    assert json.loads(state.query("SELECT locations FROM incidents")[0]["locations"]) == {
        "fra": "seen", "nyc": "not", "sgp": "not"}

    store.set_faults(["down"], agents=["a1", "a2"])
    ticket = await wait_for("one L1 ticket", lambda: state.query(
        "SELECT * FROM local_tickets"), 30)
    await asyncio.sleep(2)  # more failing runs from fra and nyc: still one ticket
    store.set_faults([], agents=["a1", "a2"])
    await wait_for("the ticket resolved", lambda: state.query(
        "SELECT 1 FROM local_tickets WHERE state = 'resolved'"), 30)
    await agents.stop()
    (incident,) = state.query("SELECT * FROM incidents WHERE kind = 'site_down'")
    assert (incident["level"], incident["state"], incident["unconfirmed"]) == (1, "resolved", 0)
    assert [t["incident_id"] for t in state.query("SELECT * FROM local_tickets")] == [
        incident["id"]]
    assert "seen from: fra, nyc; not from: sgp" in ticket[0]["body"]
    assert ticket[0]["title"].startswith("[L1] demo")
    shown = await asyncio.to_thread(storewatch, "incidents", "show", str(incident["id"]),
                                    *state.cli_args())
    assert shown.returncode == 0, shown.stderr
    assert "  locations: seen from: fra, nyc; not from: sgp" in shown.stdout.splitlines()
    history = [r["type"] for r in state.query(
        "SELECT type FROM incident_events WHERE incident_id = ? ORDER BY id", (incident["id"],))]
    assert history[:3] == ["started", "unconfirmed", "opened"]


def _occurrences(state: SharedState) -> int:
    rows = state.query("SELECT occurrences FROM incidents WHERE kind = 'site_down'")
    return int(rows[0]["occurrences"]) if rows else 0
