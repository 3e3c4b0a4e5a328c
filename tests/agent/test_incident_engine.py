"""The incident engine on a real store: inhibition, maintenance, silences, connectivity guard,
host causes, routing and escalation, manual resolve, restart. Observations are built directly
(the probes are tested elsewhere); every decision goes through the real engine and store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config.schema import Config
from agent.incidents.engine import IncidentEngine, manual_resolve, route
from agent.pipeline import Classifier, Observation
from agent.probes.base import ProbeResult
from agent.state.store import OutboxState, Store, db_path
from classifier import Evidence, Finding, FindingKind, Level, Phase

K = FindingKind
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_config(tmp_path: Path, **extra: Any) -> Config:
    return Config.model_validate({
        "agent": {"state_dir": str(tmp_path)},
        "sites": [{"name": "shop", "base_url": "http://shop.test", "checks": [
            {"name": "home", "path": "/"}, {"name": "category", "path": "/c"},
            {"name": "search", "path": "/s"}]}],
        **extra,
    })


class Harness:
    location: str | Path | None = None
    """The store of every harness of a test (``_backend``: SQLite, then PostgreSQL)."""

    def __init__(self, tmp_path: Path, config: Config) -> None:
        self.config = config
        self.store = Store(self.location or db_path(tmp_path))
        self.engine = IncidentEngine(self.store, config)
        self.classifier = Classifier(config)
        self.now = T0

    def run(self, check: str, *kinds: K, online: bool = True, **facts: float) -> None:
        findings = tuple(Finding("shop", check, k, f"{k.value} on {check}", self.now,
                                 Evidence(url=f"http://shop.test/{check}", status=503), facts)
                         for k in kinds)
        result = ProbeResult("shop", check, not findings, 0.1, self.now, findings=findings)
        obs: Observation = self.classifier.observe(result)
        self.engine.handle(obs, online=online, now=self.now)
        self.now += timedelta(minutes=1)

    def active(self) -> dict[str, tuple[Phase, Level | None, str | None]]:
        return {f"{i.check}:{i.kind.value}": (i.state, i.level, i.silenced)
                for i in self.store.active_incidents("shop")}

    def outbox(self) -> list[tuple[int, str, str]]:
        return [(e.incident_id, e.sink, e.action) for e in self.store.outbox()]


@pytest.fixture(autouse=True)
def _backend(state_location: str | Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs on SQLite and on PostgreSQL."""
    monkeypatch.setattr(Harness, "location", state_location)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, make_config(tmp_path))
    yield h
    h.store.close()


def test_an_l1_opens_after_two_runs_with_one_ticket_and_resolves(harness: Harness) -> None:
    harness.run("home", K.SITE_DOWN)
    assert harness.active() == {"home:site_down": (Phase.PENDING, Level.L1, None)}
    assert harness.outbox() == []
    harness.run("home", K.SITE_DOWN)
    harness.run("home", K.SITE_DOWN)
    assert harness.active() == {"home:site_down": (Phase.OPEN, Level.L1, None)}
    assert harness.outbox() == [(1, "sqlite", "open")]
    harness.run("home")
    harness.run("home")
    assert harness.active() == {}
    assert harness.outbox() == [(1, "sqlite", "open"), (1, "sqlite", "resolve")]
    incident = harness.store.incident(1)
    assert incident is not None and incident.occurrences == 3 and incident.resolved_at


def test_site_down_suppresses_the_sites_other_findings(harness: Harness) -> None:
    for _ in range(4):
        harness.run("home", K.SITE_DOWN)
        harness.run("category", K.PARTIAL_OUTAGE)
        harness.run("search", K.SEARCH_BROKEN)
    active = harness.active()
    assert active["home:site_down"] == (Phase.OPEN, Level.L1, None)
    assert active["category:partial_outage"][0] is Phase.OPEN
    assert active["category:partial_outage"][2] == "suppressed by site-down incident #1"
    assert [a for _, _, a in harness.outbox()] == ["open"]  # only the site-down ticket
    down = harness.store.incident(1)
    assert down is not None
    assert down.suppressed == ("category: partial_outage", "search: search_broken")
    # the site recovers; search is still broken: now it gets its own ticket
    harness.run("home")
    harness.run("category")
    harness.run("home")
    harness.run("search", K.SEARCH_BROKEN)
    assert "home:site_down" not in harness.active()
    assert harness.outbox()[-1][1:] == ("sqlite", "open")
    assert harness.store.incident(harness.outbox()[-1][0]).kind is K.SEARCH_BROKEN  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["config-window", "silence-site", "silence-check"])
def test_maintenance_records_without_tickets(tmp_path: Path, how: str) -> None:
    extra: dict[str, Any] = {}
    if how == "config-window":
        extra = {"incidents": {"maintenance": [{
            "start": "2026-03-01T11:00:00Z", "end": "2026-03-01T13:00:00Z", "sites": ["shop"],
            "reason": "deploy v2"}]}}
    h = Harness(tmp_path, make_config(tmp_path, **extra))
    if how != "config-window":
        h.store.add_silence("shop", "home" if how == "silence-check" else None, "deploy", T0,
                            timedelta(hours=1))
    for _ in range(3):
        h.run("home", K.SITE_DOWN)
    (state, level, silenced), = h.active().values()
    assert (state, level) == (Phase.OPEN, Level.L1)
    assert silenced is not None and ("deploy" in silenced)
    assert h.outbox() == []
    h.store.close()


def test_a_window_for_another_check_does_not_silence(tmp_path: Path) -> None:
    h = Harness(tmp_path, make_config(tmp_path))
    h.store.add_silence("shop", "search", "deploy", T0, timedelta(hours=1))
    h.run("home", K.SITE_DOWN)
    h.run("home", K.SITE_DOWN)
    assert h.outbox() == [(1, "sqlite", "open")]
    h.store.close()


def test_offline_agent_records_agent_offline_not_a_client_incident(harness: Harness) -> None:
    for _ in range(4):
        harness.run("home", K.SITE_DOWN, online=False)
    assert harness.active() == {"home:agent_offline": (
        Phase.OPEN, None, "the agent's own network is down (reference targets unreachable too)")}
    assert harness.outbox() == []
    for _ in range(2):  # back online and healthy: the offline record resolves by itself
        harness.run("home")
    assert harness.active() == {}


def test_host_findings_attach_to_the_storefront_incident_as_probable_cause(
        harness: Harness) -> None:
    harness.run("home", K.SITE_DOWN)
    harness.run("home", K.SITE_DOWN)
    harness.run("host", K.SERVICE_DOWN)
    harness.run("host", K.SERVICE_DOWN)
    assert set(harness.active()) == {"home:site_down"}
    down = harness.store.incident(1)
    assert down is not None and down.causes == ("host: service_down — service_down on host",)
    assert harness.outbox() == [(1, "sqlite", "open"), (1, "sqlite", "update")]


def test_host_finding_alone_is_its_own_incident(harness: Harness) -> None:
    for _ in range(3):
        harness.run("host", K.SERVICE_DOWN)
    assert harness.active() == {"host:service_down": (Phase.OPEN, Level.L2, None)}


def test_routing_by_level_and_escalation_adds_the_urgent_sinks(tmp_path: Path) -> None:
    config = make_config(tmp_path, sinks={"pager": {"type": "sqlite"},
                                          "tracker": {"type": "sqlite"}},
                         routing=[{"levels": [1], "sinks": ["pager", "tracker"]},
                                  {"sinks": ["tracker"]}])
    assert route(config, "shop", Level.L1) == ["pager", "tracker"]
    assert route(config, "shop", Level.L3) == ["tracker"]
    h = Harness(tmp_path, config)
    for _ in range(3):
        h.run("home", K.PARTIAL_OUTAGE)
    assert h.outbox() == [(1, "tracker", "open")]
    h.run("home", K.SITE_DOWN)  # a different fingerprint: its own L1 incident, pending
    h.run("category", K.TLS_EXPIRING, days_left=5)  # site-wide L2
    h.run("category", K.TLS_EXPIRING, days_left=5)
    h.run("category", K.TLS_EXPIRING, days_left=5)
    h.run("category", K.TLS_EXPIRING, days_left=0)  # escalates to L1
    tls = [e for e in h.outbox() if e[0] == 3]
    assert tls == [(3, "tracker", "open"), (3, "tracker", "update"), (3, "pager", "open")]
    escalation = [e for e in h.store.outbox() if e.incident_id == 3 and e.action == "update"]
    assert escalation[0].event_kind == "escalated"
    h.store.close()


def test_default_route_is_the_sqlite_sink(tmp_path: Path) -> None:
    assert route(make_config(tmp_path), "shop", Level.L4) == ["sqlite"]


def test_manual_resolve_queues_the_ticket_resolve(harness: Harness) -> None:
    harness.run("home", K.SITE_DOWN)
    harness.run("home", K.SITE_DOWN)
    assert manual_resolve(harness.store, 1, harness.now)
    assert not manual_resolve(harness.store, 1, harness.now)
    assert harness.outbox() == [(1, "sqlite", "open"), (1, "sqlite", "resolve")]
    harness.run("home", K.SITE_DOWN)  # still failing: a new incident, pending again
    assert harness.active() == {"home:site_down": (Phase.PENDING, Level.L1, None)}


def test_a_restart_resumes_where_it_was(tmp_path: Path) -> None:
    h = Harness(tmp_path, make_config(tmp_path))
    h.run("home", K.SITE_DOWN)
    h.store.close()
    again = Harness(tmp_path, make_config(tmp_path))
    again.now = h.now
    again.run("home", K.SITE_DOWN)
    assert again.active() == {"home:site_down": (Phase.OPEN, Level.L1, None)}
    again.run("home", K.SITE_DOWN)
    assert again.outbox() == [(1, "sqlite", "open")]
    assert [e.state for e in again.store.outbox()] == [OutboxState.PENDING]
    again.store.close()


def test_per_check_confirmation_override(tmp_path: Path) -> None:
    h = Harness(tmp_path, make_config(tmp_path, incidents={
        "checks": [{"site": "shop", "check": "search", "confirm": 1}]}))
    h.run("search", K.SEARCH_BROKEN)
    assert h.active() == {"search:search_broken": (Phase.OPEN, Level.L3, None)}
    h.store.close()


def test_a_ticketed_incident_learns_when_the_whole_site_goes_down(harness: Harness) -> None:
    for _ in range(3):
        harness.run("category", K.CATALOG_MISSING)
    assert harness.outbox() == [(1, "sqlite", "open")]
    harness.run("home", K.SITE_DOWN)
    harness.run("home", K.SITE_DOWN)
    assert harness.outbox() == [(1, "sqlite", "open"), (2, "sqlite", "open"),
                                (1, "sqlite", "update")]
    note = harness.store.outbox()[-1]
    assert (note.event_kind, note.text) == ("escalated",
                                            "The whole site is now down (L1): incident #2.")


def test_flapping_across_incidents_is_held_open_not_reticketed(tmp_path: Path) -> None:
    h = Harness(tmp_path, make_config(tmp_path, incidents={
        "confirm_l1": 1, "recover": 1, "flap_changes": 4, "flap_window": "1h"}))
    for _ in range(4):
        h.run("home", K.SITE_DOWN)
        h.run("home")
    assert h.outbox() == [(1, "sqlite", "open"), (1, "sqlite", "resolve"),
                          (2, "sqlite", "open"), (2, "sqlite", "update")]
    (incident,) = h.store.active_incidents("shop")
    assert (incident.id, incident.state, incident.flapping) == (2, Phase.OPEN, True)
    h.store.close()


def test_two_checks_seeing_a_broken_checkout_share_one_incident_and_ticket(
        harness: Harness) -> None:
    harness.run("home", K.CHECKOUT_BROKEN)
    harness.run("category", K.CHECKOUT_BROKEN)
    harness.run("home", K.CHECKOUT_BROKEN)
    (incident,) = harness.store.active_incidents("shop")
    assert incident.state is Phase.OPEN and incident.evidence.details["checks"] == \
        "category, home"
    assert harness.outbox() == [(1, "sqlite", "open")]
    history = [text for _, t, text in harness.store.events(incident.id) if t == "evidence"]
    assert history == ["also seen by check category: checkout_broken on category"]
    harness.run("home")
    harness.run("home")
    assert harness.active() != {}  # category still failed last: not recovered
    harness.run("category")
    harness.run("category")
    assert harness.active() == {}


def test_a_broken_checkout_makes_payment_and_shipping_findings_related(
        harness: Harness) -> None:
    for _ in range(3):
        harness.run("home", K.CHECKOUT_BROKEN)
        harness.run("category", K.PAYMENT_UNAVAILABLE, K.BUSINESS_LOGIC_DEGRADED)
    checkout = next(i for i in harness.store.active_incidents("shop")
                    if i.kind is K.CHECKOUT_BROKEN)
    assert checkout.suppressed == ("category: payment_unavailable",
                                   "category: business_logic_degraded")
    related = [i for i in harness.store.active_incidents("shop") if i.id != checkout.id]
    assert related and all(i.silenced and "checkout_broken incident" in i.silenced
                           for i in related)
    assert harness.outbox() == [(checkout.id, "sqlite", "open")]


def test_a_pending_incident_that_passes_is_listed_as_discarded(
        harness: Harness, tmp_path: Path) -> None:
    from agent.incidents.cli import incident_json, shown_state

    harness.run("category", K.PAGE_CORRUPTED)
    harness.run("category")
    (record,) = harness.store.incidents()
    assert shown_state(record) == "discarded"
    assert incident_json(harness.store, record)["state"] == "discarded"
    assert record.opened_at is None
