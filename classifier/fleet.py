"""Confirmation across locations: one incident fed by the runs of several agents.

Every location (an agent's ``agent.location``, else its name) keeps a lifecycle ``Track`` of its
own per fingerprint, moved by ``step`` with the usual ``confirm``/``recover`` counts (without
flap holding or reminders: those belong to the incident). A location is *confirmed failing*
while its track is open. The incident's own ``Track`` (the one tickets follow) is moved by the
same runs, gated by the locations:

* a failing run may open the incident only while at least ``min_locations`` locations are
  confirmed failing (then at once); until then it stays pending — *unconfirmed* once some
  location has confirmed it;
* an open incident resolves once fewer than ``min_locations`` locations are still confirmed
  failing (each location recovers after its own ``recover`` passing runs; with a single
  location known, the incident counts them itself, exactly as without a fleet);
* a pending incident is discarded only once no location is failing any more (a passing run of
  one location does not discard what another location still sees).

Only the locations the caller passes count: the caller leaves out locations whose latest run
is older than the confirmation window. With one location and ``min_locations`` 1 the incident
moves exactly as ``step`` alone moves it. No clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from classifier.lifecycle import Event, Phase, Policy, Run, Track, step

HOLD = 1_000_000
"""A count no run sequence reaches: holds a transition back."""


@dataclass(frozen=True, slots=True)
class FleetStep:
    """The result of one run of one location."""

    incident: Track
    location: Track
    """The new track of the run's location."""
    events: tuple[Event, ...]
    """What happened to the incident (the locations' own events are not reported)."""
    confirmed: frozenset[str]
    """Locations confirmed failing after the run."""
    failing: frozenset[str]
    """Locations whose latest runs fail (pending, confirmed, or recovering)."""

    @property
    def unconfirmed(self) -> bool:
        """Pending although some location confirmed it: too few locations for an incident."""
        return self.incident.phase is Phase.PENDING and bool(self.confirmed)


def location_policy(policy: Policy) -> Policy:
    """A location's lifecycle: the check's confirm/recover counts, no flap holding, no
    reminders."""
    return replace(policy, flap_changes=HOLD, reminder=None)


def fleet_step(incident: Track, locations: Mapping[str, Track], location: str, run: Run,
               now: datetime, policy: Policy, min_locations: int = 1) -> FleetStep:
    """Apply one run seen from ``location`` (``locations``: the fresh tracks of every location,
    this one's included when it has one)."""
    if min_locations < 1:
        raise ValueError("min_locations must be at least 1")
    before = frozenset().union(*(t.sources for t in locations.values()))
    own, _ = step(locations.get(location, Track()), run, now, location_policy(policy))
    tracks = {**locations, location: own}
    confirmed = frozenset(name for name, t in tracks.items() if t.phase is Phase.OPEN)
    failing = frozenset(name for name, t in tracks.items() if t.phase is not Phase.RESOLVED)
    sources = frozenset().union(*(t.sources for t in tracks.values()))
    incident = replace(incident, sources=before)
    if run.failing:
        enough = len(confirmed) >= min_locations
        new, events = step(incident, run, now, replace(policy, confirm=1 if enough else HOLD))
    elif incident.phase is Phase.PENDING and failing:
        new, events = incident, ()  # another location (or check) still sees it
    elif incident.phase is Phase.OPEN and len(confirmed) >= min_locations:
        new, events = step(incident, run, now, replace(policy, recover=HOLD))
    elif incident.phase is Phase.OPEN and len(tracks) > 1:
        # the locations counted their recovering runs: resolve on the run that drops the
        # incident below min_locations (other locations' failing runs reset its own count)
        new, events = step(incident, run, now, replace(policy, recover=1))
    else:
        new, events = step(incident, run, now, policy)
    return FleetStep(replace(new, sources=sources), own, events, confirmed, failing)
