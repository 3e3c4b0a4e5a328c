"""Confirmation across locations (classifier.fleet_step): pure tests of the per-location rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from classifier import EventType, Level, Phase, Policy, Run, TicketOp, Track, fleet_step, step

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy()
FAIL = Run("home", True, Level.L1)
PASS = Run("home", False)


class Fleet:
    """One fingerprint's incident and its locations, fed run by run."""

    def __init__(self, min_locations: int = 1, policy: Policy = POLICY) -> None:
        self.incident = Track()
        self.locations: dict[str, Track] = {}
        self.min_locations = min_locations
        self.policy = policy
        self.now = T0
        self.events: list[tuple[str, EventType, TicketOp | None]] = []
        self.unconfirmed = False

    def run(self, location: str, run: Run) -> None:
        result = fleet_step(self.incident, self.locations, location, run, self.now,
                            self.policy, self.min_locations)
        self.incident = result.incident
        self.locations[location] = result.location
        self.unconfirmed = result.unconfirmed
        self.events += [(location, e.type, e.ticket) for e in result.events]
        self.now += timedelta(seconds=20)

    def interval(self, **runs: Run) -> None:
        for location, run in runs.items():
            self.run(location, run)

    def phase(self) -> Phase:
        return self.incident.phase

    def types(self) -> list[EventType]:
        return [t for _, t, _ in self.events]

    def tickets(self) -> list[TicketOp]:
        return [op for _, _, op in self.events if op is not None]


SEQUENCES = [
    [FAIL, FAIL, PASS, PASS],
    [FAIL, PASS, FAIL, FAIL, FAIL, PASS, FAIL, PASS, PASS, PASS],
    [FAIL, FAIL, PASS, FAIL, PASS, PASS, FAIL, FAIL, PASS, PASS, FAIL, FAIL, PASS, PASS,
     FAIL, FAIL, PASS, PASS, FAIL, FAIL, FAIL, PASS, PASS, PASS],
    [FAIL, Run("search", True, Level.L1), PASS, FAIL, Run("search", False), PASS, PASS],
    [FAIL, Run("home", True, Level.L2), FAIL, Run("home", True, Level.L3, False, "silenced"),
     PASS, PASS],
]


@pytest.mark.parametrize("runs", SEQUENCES)
@pytest.mark.parametrize("policy", [POLICY, Policy(reminder=timedelta(seconds=30),
                                                   flap_changes=3)])
def test_one_location_moves_the_incident_exactly_as_step_alone(runs: list[Run],
                                                               policy: Policy) -> None:
    fleet = Fleet(policy=policy)
    alone, now = Track(), T0
    for run in runs:
        before = len(fleet.events)
        fleet.run("fra", run)
        alone, events = step(alone, run, now, policy)
        now += timedelta(seconds=20)
        assert fleet.incident == alone
        assert fleet.events[before:] == [("fra", e.type, e.ticket) for e in events]
        assert not fleet.unconfirmed


def test_one_failing_location_among_passing_ones_does_not_flap_the_incident() -> None:
    fleet = Fleet(min_locations=1)
    for _ in range(10):
        fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    assert fleet.phase() is Phase.OPEN
    assert fleet.types() == [EventType.STARTED, EventType.OPENED]
    assert fleet.tickets() == [TicketOp.OPEN]


def test_with_two_locations_needed_one_failing_location_stays_unconfirmed() -> None:
    fleet = Fleet(min_locations=2)
    fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    assert fleet.phase() is Phase.PENDING and not fleet.unconfirmed
    for _ in range(10):
        fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    assert fleet.phase() is Phase.PENDING and fleet.unconfirmed
    assert fleet.types() == [EventType.STARTED]
    assert fleet.tickets() == []


def test_a_second_location_confirming_opens_one_ticket() -> None:
    fleet = Fleet(min_locations=2)
    for _ in range(3):
        fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    fleet.interval(a1=FAIL, a2=FAIL, a3=PASS)
    assert fleet.phase() is Phase.PENDING  # a2 has one failing run of the two needed
    fleet.interval(a1=FAIL, a2=FAIL, a3=PASS)
    assert fleet.phase() is Phase.OPEN and not fleet.unconfirmed
    assert fleet.events[-1] == ("a2", EventType.OPENED, TicketOp.OPEN)
    for _ in range(5):
        fleet.interval(a1=FAIL, a2=FAIL, a3=PASS)
    assert fleet.tickets() == [TicketOp.OPEN]


def test_it_resolves_once_fewer_than_min_locations_still_fail() -> None:
    fleet = Fleet(min_locations=2)
    for _ in range(2):
        fleet.interval(a1=FAIL, a2=FAIL, a3=FAIL)
    assert fleet.phase() is Phase.OPEN
    fleet.interval(a1=FAIL, a2=FAIL, a3=PASS)
    fleet.interval(a1=FAIL, a2=FAIL, a3=PASS)  # a3 recovered: a1 and a2 still fail
    assert fleet.phase() is Phase.OPEN
    fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    assert fleet.phase() is Phase.OPEN  # a2 needs its second passing run
    fleet.interval(a1=FAIL, a2=PASS, a3=PASS)
    assert fleet.phase() is Phase.RESOLVED
    assert fleet.events[-1] == ("a2", EventType.RESOLVED, TicketOp.RESOLVE)
    assert fleet.tickets() == [TicketOp.OPEN, TicketOp.RESOLVE]


def test_an_unconfirmed_failure_is_discarded_once_no_location_fails() -> None:
    fleet = Fleet(min_locations=2)
    for _ in range(3):
        fleet.interval(a1=FAIL, a2=PASS)
    fleet.interval(a1=PASS, a2=PASS)
    assert fleet.phase() is Phase.PENDING  # a1 recovers after two passing runs
    fleet.interval(a1=PASS, a2=PASS)
    assert fleet.phase() is Phase.RESOLVED and not fleet.unconfirmed
    assert fleet.types() == [EventType.STARTED, EventType.DISCARDED]


def test_a_location_confirms_by_its_own_consecutive_runs_not_by_others() -> None:
    fleet = Fleet(min_locations=1)
    fleet.interval(a1=FAIL, a2=PASS)
    fleet.interval(a1=PASS, a2=FAIL)
    fleet.interval(a1=FAIL, a2=PASS)
    assert fleet.phase() is Phase.PENDING  # nobody failed twice in a row
    assert fleet.tickets() == []


def test_min_locations_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fleet_step(Track(), {}, "a1", FAIL, T0, POLICY, 0)
