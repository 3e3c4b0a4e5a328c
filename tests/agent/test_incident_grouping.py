"""Item 4 of issue 11: one incident per root cause.

The demo's `checkout` fault fails both the HTML checkout flow and the guest-cart API check: with
the default ``incidents.group_by`` that is one L1 incident listing both checks, and one ticket.
Real subprocesses: `storewatch demo-store --fault checkout` and `storewatch run` with the bundled
demo config (only its listen address and state directory changed).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.test_demo_faults import DEMO_CONFIG, demo_store
from tests.agent.test_incidents_e2e import Daemon, cli_json, daemon, query, wait_for

__all__ = ["daemon"]  # the fixture, re-used


def demo_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    text = DEMO_CONFIG.read_text()
    text = text.replace("listen: 127.0.0.1:9478", "listen: 127.0.0.1:0")
    text = text.replace("${STOREWATCH_STATE_DIR:-./state}", str(tmp_path / "state"))
    text = text.replace("${STOREWATCH_DEMO_URL:-http://127.0.0.1:8765}", url)
    path = tmp_path / "demo.yaml"
    path.write_text(text + extra)
    return path


@pytest.mark.slow
async def test_demo_checkout_fault_is_one_incident_with_one_ticket(
        tmp_path: Path, daemon: Callable[[Path], Daemon]) -> None:
    with demo_store("checkout") as url:
        config = demo_config(tmp_path, url)
        agent = daemon(config)
        await agent.start()
        both = await wait_for("the checkout incident seen by both checks", lambda: [
            r for r in query(tmp_path, "SELECT * FROM incidents WHERE kind = 'checkout_broken'"
                                       " AND state = 'open'")
            if "guest-cart-api" in r["evidence"] and '"checkout' in r["evidence"]], 90)
        await wait_for("its ticket", lambda: query(tmp_path, "SELECT 1 FROM local_tickets"), 20)
        await asyncio.sleep(12)  # both checks run again (10 s interval): still one incident
        await agent.kill(signal.SIGTERM)
    incidents = (await cli_json("incidents", "list", "--json", "-c", str(config)))["incidents"]
    checkout = [i for i in incidents if i["kind"] == "checkout_broken"]
    assert len(checkout) == 1, checkout
    assert checkout[0]["level"] == 1 and checkout[0]["id"] == both[0]["id"]
    evidence = json.loads(both[0]["evidence"])
    assert evidence["details"]["checks"] == "checkout, guest-cart-api"
    tickets = query(tmp_path, "SELECT i.kind FROM local_tickets t JOIN incidents i "
                              "ON i.id = t.incident_id")
    assert [t["kind"] for t in tickets] == ["checkout_broken"]
    assert [i for i in incidents if i["level"] in (1, 2) and i["kind"] != "checkout_broken"
            and i["state"] != "discarded" and i["tickets"]] == []


@pytest.mark.slow
async def test_group_by_check_gives_each_check_its_own_incident(
        tmp_path: Path, daemon: Callable[[Path], Daemon]) -> None:
    with demo_store("checkout") as url:
        config = demo_config(tmp_path, url, "\nincidents:\n  group_by: [site, kind, check]\n")
        agent = daemon(config)
        await agent.start()
        await wait_for("two checkout incidents", lambda: len(query(
            tmp_path, "SELECT 1 FROM incidents WHERE kind = 'checkout_broken' AND state = 'open'"
        )) == 2, 90)
        await agent.kill(signal.SIGTERM)
    checks = {r["check_name"] for r in query(
        tmp_path, "SELECT check_name FROM incidents WHERE kind = 'checkout_broken'")}
    assert checks == {"checkout", "guest-cart-api"}
