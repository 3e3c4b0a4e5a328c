"""Three incident engines (one per agent location) on one real store: the per-location lifecycle
as the engine applies it (confirmation window, manual resolve, the incident's locations)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config.schema import Config
from agent.incidents.engine import IncidentEngine, manual_resolve
from agent.pipeline import Classifier
from agent.probes.base import ProbeResult
from agent.sinks.render import SiteInfo, body, seen_from
from agent.state.store import Store, db_path
from classifier import Evidence, Finding, FindingKind, Phase

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def config(tmp_path: Path, name: str, location: str, **incidents: Any) -> Config:
    return Config.model_validate({
        "agent": {"state_dir": str(tmp_path), "name": name, "location": location},
        "defaults": {"interval": "60s"},
        "sites": [{"name": "shop", "base_url": "http://shop.test", "checks": [
            {"name": "home", "path": "/"}]}],
        "incidents": incidents,
    })


class Fleet:
    def __init__(self, tmp_path: Path, **incidents: Any) -> None:
        self.stores = {}
        self.engines = {}
        for name, location in (("a1", "fra"), ("a2", "nyc"), ("a3", "sgp")):
            self.stores[name] = Store(db_path(tmp_path))
            cfg = config(tmp_path, name, location, **incidents)
            self.engines[name] = (IncidentEngine(self.stores[name], cfg), Classifier(cfg))
        self.store = self.stores["a1"]
        self.now = T0

    def run(self, agent: str, failing: bool) -> None:
        engine, classifier = self.engines[agent]
        findings = (Finding("shop", "home", FindingKind.SITE_DOWN, "home page 503", self.now,
                            Evidence(url="http://shop.test/", status=503)),) if failing else ()
        result = ProbeResult("shop", "home", not findings, 0.1, self.now, findings=findings)
        engine.handle(classifier.observe(result), now=self.now)
        self.now += timedelta(seconds=20)

    def interval(self, **failing: bool) -> None:
        for agent, fails in failing.items():
            self.run(agent, fails)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(**incidents: Any) -> Fleet:
        made.append(Fleet(tmp_path, **incidents))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_one_failing_location_among_passing_ones_neither_flaps_nor_doubles(fleet: Any) -> None:
    f = fleet()
    for _ in range(8):
        f.interval(a1=True, a2=False, a3=False)
    (incident,) = f.store.incidents()
    assert incident.state is Phase.OPEN and not incident.flapping
    assert [t for _, t, _ in f.store.events(incident.id)] == ["started", "opened"]
    assert [(e.sink, e.action) for e in f.store.outbox()] == [("sqlite", "open")]
    assert incident.seen_from == ("fra",) and incident.not_from == ("nyc", "sgp")


def test_with_min_locations_two_a_lone_location_stays_unconfirmed(fleet: Any) -> None:
    f = fleet(min_locations=2)
    for _ in range(6):
        f.interval(a1=True, a2=False, a3=False)
    (incident,) = f.store.incidents()
    assert (incident.state, incident.status, incident.unconfirmed) == (
        Phase.PENDING, "unconfirmed", True)
    assert f.store.outbox() == []
    f.interval(a1=True, a2=True, a3=False)
    f.interval(a1=True, a2=True, a3=False)
    (incident,) = f.store.incidents()
    assert (incident.status, incident.unconfirmed) == ("open", False)
    assert [(e.sink, e.action) for e in f.store.outbox()] == [("sqlite", "open")]


def test_a_location_silent_for_longer_than_the_window_no_longer_counts(fleet: Any) -> None:
    f = fleet(min_locations=2)
    f.interval(a2=True)
    f.interval(a2=True)  # nyc confirmed ... and then its agent stops
    f.now += timedelta(minutes=5)  # window: two 60 s intervals plus the 45 s budget
    f.interval(a1=True)
    f.interval(a1=True)
    (incident,) = f.store.incidents()
    assert incident.status == "unconfirmed"
    assert f.store.outbox() == []


def test_a_manual_resolve_forgets_every_locations_state(fleet: Any) -> None:
    f = fleet()
    f.interval(a1=True, a2=True)
    f.interval(a1=True, a2=True)
    (incident,) = f.store.incidents()
    assert incident.state is Phase.OPEN
    assert manual_resolve(f.store, incident.id, f.now)
    f.interval(a1=True)
    newest = f.store.incidents()[0]
    assert newest.id != incident.id and newest.state is Phase.PENDING  # confirmed afresh


def test_an_unconfirmed_site_down_does_not_suppress_what_other_locations_see(
        fleet: Any) -> None:
    f = fleet(min_locations=2)
    f.interval(a1=True)
    f.interval(a1=True)
    assert f.store.incidents()[0].status == "unconfirmed"
    for agent in ("a2", "a3") * 3:  # L2: three failing runs confirm it, from each location
        engine, classifier = f.engines[agent]
        finding = Finding("shop", "home", FindingKind.PARTIAL_OUTAGE, "category 500", f.now,
                          Evidence(url="http://shop.test/c", status=500))
        result = ProbeResult("shop", "home", False, 0.1, f.now, findings=(finding,))
        engine.handle(classifier.observe(result), now=f.now)
        f.now += timedelta(seconds=20)
    outage = next(i for i in f.store.incidents() if i.kind is FindingKind.PARTIAL_OUTAGE)
    assert (outage.status, outage.silenced) == ("open", None)
    assert [(e.incident_id, e.action) for e in f.store.outbox()] == [(outage.id, "open")]


def test_an_incident_from_before_the_fleet_schema_carries_on_as_the_agents_own(
        fleet: Any) -> None:
    f = fleet()
    f.run("a1", True)  # pending, one failing run ...
    f.store.conn.execute("DELETE FROM location_tracks")  # ... as a version-2 store knew it
    f.run("a1", True)
    (incident,) = f.store.incidents()
    assert incident.state is Phase.OPEN  # the second failing run confirms, as before


def test_the_ticket_names_locations_only_once_several_are_known(fleet: Any) -> None:
    f = fleet()
    f.interval(a1=True)
    f.interval(a1=True)
    (alone,) = f.store.incidents()
    assert seen_from(alone) is None and "Locations" not in body(alone, SiteInfo())
    f.interval(a2=False, a3=True)
    (several,) = f.store.incidents()
    assert seen_from(several) == "seen from: fra, sgp; not from: nyc"
    assert "**Locations:** seen from: fra, sgp; not from: nyc" in body(several, SiteInfo())
