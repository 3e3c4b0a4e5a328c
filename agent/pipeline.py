"""The one linear path a probe result takes: classify each finding, keep the latest, count it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.config.schema import Config, Site
from agent.probes.base import ProbeResult
from classifier import (
    DEFAULT_RULES,
    Decision,
    Finding,
    Rule,
    SiteContext,
    classify,
    with_overrides,
)


@dataclass(frozen=True, slots=True)
class Classified:
    """A finding with the decision about it."""

    finding: Finding
    decision: Decision


@dataclass(frozen=True, slots=True)
class Observation:
    """A probe result with every finding classified, and which agent, from where, saw it."""

    result: ProbeResult
    classified: tuple[Classified, ...]
    agent: str | None = None
    """``agent.name`` of the agent that ran the probe (set by ``Classifier.observe``)."""
    location: str | None = None
    """``agent.location`` of that agent (None: not configured)."""


class Classifier:
    """Classification as configured: agency-wide overrides, then each site's own."""

    def __init__(self, config: Config) -> None:
        self._rules: Sequence[Rule] = (with_overrides(config.classifier.levels)
                                       if config.classifier.levels else DEFAULT_RULES)
        self._contexts = {s.name: _context(s) for s in config.sites}
        self._agent = config.agent.name
        self._location = config.agent.location

    def observe(self, result: ProbeResult) -> Observation:
        """Classify every finding of ``result``, as seen by this agent from its location."""
        ctx = self._contexts.get(result.site) or SiteContext(result.site)
        return Observation(result, tuple(Classified(f, classify(f, ctx, self._rules))
                                         for f in result.findings),
                           agent=self._agent, location=self._location)


def _context(site: Site) -> SiteContext:
    return SiteContext(site.name, site.plan, dict(site.levels))


class LatestResults:
    """The latest observation of every check; written by the event loop, read by scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Observation] = {}

    def put(self, observation: Observation) -> None:
        """Replace the check's previous observation."""
        key = (observation.result.site, observation.result.check)
        with self._lock:
            self._latest[key] = observation

    def forget(self, site: str, check: str) -> None:
        """Drop the check's observation (another agent of the fleet runs it now)."""
        with self._lock:
            self._latest.pop((site, check), None)

    def retain(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget checks that are no longer configured (after a reload)."""
        wanted = set(keys)
        with self._lock:
            self._latest = {k: v for k, v in self._latest.items() if k in wanted}

    def snapshot(self) -> list[Observation]:
        """A consistent copy, sorted by site and check."""
        with self._lock:
            items = sorted(self._latest.items())
        return [obs for _, obs in items]
