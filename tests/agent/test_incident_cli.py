"""`storewatch incidents|tickets|silence` as real subprocesses on a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from agent.sinks.base import SinkBuildContext
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.sinks.sqlite import SqliteSink
from agent.state.store import Store, db_path
from classifier import FindingKind as K
from tests.agent.test_incident_engine import Harness, make_config
from tests.conftest import storewatch


@pytest.fixture
async def state(tmp_path: Path) -> Path:
    """A state dir with an open, ticketed L1 incident (#1) and a pending one (#2)."""
    h = Harness(tmp_path, make_config(tmp_path))
    h.run("home", K.SITE_DOWN)
    h.run("home", K.SITE_DOWN)
    h.run("search", K.SEARCH_BROKEN)
    async with httpx.AsyncClient() as http:
        sink = SqliteSink("sqlite", SinkBuildContext("sqlite", lambda: http, tmp_path, "test"))
        await Outbox(h.store, {"sqlite": sink}, lambda s: SiteInfo()).deliver_due()
        sink.close()
    h.store.close()
    return tmp_path


def run_json(*args: str) -> dict[str, object]:
    proc = storewatch(*args)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def test_incidents_list_json_shape(state: Path) -> None:
    doc = run_json("incidents", "list", "--json", "--state-dir", str(state))
    incidents = doc["incidents"]
    assert isinstance(incidents, list)
    assert [(i["id"], i["kind"], i["level"], i["state"]) for i in incidents] == [
        (2, "search_broken", 3, "pending"), (1, "site_down", 1, "open")]
    one = incidents[1]
    assert set(one) >= {"id", "site", "kind", "level", "state", "flapping", "opened_at",
                        "resolved_at", "tickets"}
    assert one["tickets"] == [{"sink": "sqlite", "external_id": "LOCAL-1", "state": "open"}]
    assert one["opened_at"].endswith("Z") and one["resolved_at"] is None
    only_open = run_json("incidents", "list", "--open", "--json", "--state-dir", str(state))
    assert [i["id"] for i in only_open["incidents"]] == [1]  # type: ignore[union-attr]


def test_show_resolve_and_tickets(state: Path) -> None:
    show = storewatch("incidents", "show", "1", "--state-dir", str(state))
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines()[0] == "#1 [L1] shop — home: site_down on home"
    assert "ticket sqlite: LOCAL-1 (open, delivery delivered)" in show.stdout
    assert "opened: confirmed after 2 failing runs" in show.stdout
    resolved = storewatch("incidents", "resolve", "1", "--state-dir", str(state))
    assert (resolved.returncode, resolved.stdout) == (0, "incident #1 resolved\n")
    tickets = run_json("tickets", "list", "--json", "--state-dir", str(state))
    assert tickets["tickets"] == [{
        "incident": 1, "sink": "sqlite", "external_id": "LOCAL-1", "url": None, "state": "open",
        "delivery": "pending", "pending_actions": 1, "dead_letters": 0, "last_error": None}]
    again = storewatch("incidents", "resolve", "1", "--state-dir", str(state))
    assert again.returncode == 1
    assert again.stderr == "storewatch: incident #1 does not exist or is not active\n"


def test_silences(state: Path) -> None:
    added = storewatch("silence", "add", "--site", "shop", "--duration", "2h", "--reason",
                       "deploy", "--state-dir", str(state))
    assert added.returncode == 0 and added.stdout.startswith("silence #1 until ")
    listed = run_json("silence", "list", "--json", "--state-dir", str(state))
    assert [(s["id"], s["site"], s["check"], s["reason"])  # type: ignore[index]
            for s in listed["silences"]] == [(1, "shop", None, "deploy")]  # type: ignore[union-attr]
    store = Store(db_path(state))
    assert len(store.silences(datetime.now(UTC))) == 1
    store.close()
    removed = storewatch("silence", "remove", "1", "--state-dir", str(state))
    assert (removed.returncode, removed.stdout) == (0, "silence #1 removed\n")
    assert run_json("silence", "list", "--json", "--state-dir", str(state)) == {"silences": []}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["incidents", "list", "--state-dir", "/nonexistent/sw"], 1,
     "storewatch: no incident store at /nonexistent/sw/storewatch.db (has `storewatch run` run "
     "with this state directory?)"),
    (["silence", "add", "--duration", "soon"], 2,
     "storewatch: --duration: 'soon' is not a duration; use e.g. 30s, 5m, 1h30m"),
    (["silence", "add", "--check", "home", "--duration", "1h"], 2,
     "storewatch: --check: --check needs --site"),
    (["incidents", "show", "99"], 1, "storewatch: no incident #99"),
], ids=["no-store", "bad-duration", "check-without-site", "unknown-incident"])
def test_errors_are_one_line(state: Path, args: list[str], code: int, message: str) -> None:
    if "--state-dir" not in args:
        args = [*args, "--state-dir", str(state)]
    proc = storewatch(*args)
    assert (proc.returncode, proc.stderr.strip()) == (code, message)
    assert "Traceback" not in proc.stderr


async def test_dead_letters_make_tickets_list_exit_4_until_retried(state: Path) -> None:
    store = Store(db_path(state))
    with store.transaction():
        store.enqueue(1, "jira", "open", datetime.now(UTC))
    # the sink is not configured: a dead letter, as a 401 from a tracker would be
    await Outbox(store, {}, lambda s: SiteInfo()).deliver_due()
    store.close()
    listed = storewatch("tickets", "list", "--state-dir", str(state))
    assert listed.returncode == 4, listed.stderr
    assert "dead letter #" in listed.stdout and "via jira" in listed.stdout
    assert listed.stdout.splitlines()[-1] == (
        "1 dead letter(s): fix the cause, then `storewatch tickets retry`")
    as_json = storewatch("tickets", "list", "--json", "--state-dir", str(state))
    assert as_json.returncode == 4
    assert [d["sink"] for d in json.loads(as_json.stdout)["dead_letters"]] == ["jira"]

    retried = storewatch("tickets", "retry", "--state-dir", str(state))
    assert (retried.returncode, retried.stdout) == (
        0, "1 dead letter(s) queued for delivery again\n")
    assert storewatch("tickets", "list", "--state-dir", str(state)).returncode == 0
    store = Store(db_path(state))
    (entry,) = [e for e in store.outbox() if e.sink == "jira"]
    assert (entry.state, entry.attempts) == ("pending", 0)
    store.close()


def test_show_names_a_browser_checks_evidence_files(tmp_path: Path) -> None:
    from agent.probes.base import ProbeResult
    from classifier import Evidence, Finding

    h = Harness(tmp_path, make_config(tmp_path))
    shot = tmp_path / "evidence" / "shop" / "journey-20260301T100000-add-to-cart.png"
    evidence = Evidence(url="http://shop.test/", details={
        "step": "add-to-cart", "screenshot": str(shot),
        "browser_log": str(shot.with_suffix(".json"))})
    shot.parent.mkdir(parents=True)
    shot.write_bytes(b"\x89PNG\r\n\x1a\n")
    shot.with_suffix(".json").write_text("{}")
    for _ in range(2):
        finding = Finding("shop", "home", K.CHECKOUT_BROKEN, "step 'add-to-cart': timed out",
                          h.now, evidence)
        h.engine.handle(h.classifier.observe(ProbeResult("shop", "home", False, 0.1, h.now,
                                                         findings=(finding,))),
                        online=True, now=h.now)
    h.store.close()
    show = storewatch("incidents", "show", "1", "--state-dir", str(tmp_path))
    assert show.returncode == 0, show.stderr
    assert f"  screenshot: {shot}" in show.stdout.splitlines()
    assert f"  browser log: {shot.with_suffix('.json')}" in show.stdout.splitlines()
