"""Per-site politeness, like a crawler's per-host limit: the agent never bursts requests at a shop.

* At most ``max_in_flight`` requests of one site are in flight at once (default 2, set per site
  or in ``defaults``), whichever checks send them: every probe's request goes through the site's
  gate (agent/probes/budget.py), so a small shop that fails concurrent requests (a locked
  database on a small VPS) is never knocked over by its own monitor.
* The checks of one site start spread over their interval (``first_run_offset``), in the daemon
  and in ``storewatch check`` (``CHECK_STAGGER_S`` apart), so they do not all start at once.
* Time spent waiting for a slot is counted per site (``storewatch_site_wait_seconds_total``);
  it counts neither against a request's own timeout nor against the check's budget (the run's
  deadline moves back by the wait): queueing behind a slow shop never makes a check "broken".
  Waits are bounded by the requests holding the slots, each within its own timeout.
* The home-page check is served first when slots free up, so a down site is noticed as fast
  while many checks queue behind its hanging requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.metrics import catalog as c

DEFAULT_MAX_IN_FLIGHT = 2
"""Requests one site may have in flight at once unless configured."""
CHECK_STAGGER_S = 0.25
"""``storewatch check``: how far apart the checks of one site start."""


HOME_PRIORITY = 0
"""Slot priority of a site's home-page check: whether the site is down is learnt first."""
CHECK_PRIORITY = 1


class SiteGate:
    """The request slots of one site; waiters are served by priority, then in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.waited_s = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: int = CHECK_PRIORITY) -> AsyncIterator[float]:
        """Hold one request slot; yields how long the wait for it was.

        Waits are bounded by the requests holding the slots (each within its own timeout)."""
        start = time.perf_counter()
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # the slot was handed over just as we were cancelled
                raise
        waited = time.perf_counter() - start
        self.waited_s += waited
        try:
            yield waited
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # cancelled waiters are skipped
                waiter.set_result(None)  # the slot passes on: in_flight is unchanged
                return
        self.in_flight -= 1


class Politeness:
    """Every site's gate, made on first use (a changed limit gets a new gate)."""

    def __init__(self) -> None:
        self._gates: dict[str, SiteGate] = {}
        self._waited: dict[str, float] = {}

    def gate(self, site: str, limit: int) -> SiteGate:
        """The gate of ``site`` with ``limit`` slots."""
        gate = self._gates.get(site)
        if gate is None or gate.limit != limit:
            if gate is not None:  # keep the old gate's waiting time in the counter
                self._waited[site] = self._waited.get(site, 0.0) + gate.waited_s
            gate = self._gates[site] = SiteGate(limit)
        return gate

    def waited_seconds(self) -> dict[str, float]:
        """Seconds requests of each site have waited for a slot, since start."""
        totals = dict(self._waited)
        for site, gate in self._gates.items():
            totals[site] = totals.get(site, 0.0) + gate.waited_s
        return totals

    def collector(self) -> Collector:
        """A Prometheus collector of the waiting time and requests in flight, by site."""
        return _PolitenessCollector(self)

    def in_flight(self) -> dict[str, int]:
        """Requests in flight by site."""
        return {site: gate.in_flight for site, gate in self._gates.items()}


class _PolitenessCollector(Collector):
    def __init__(self, politeness: Politeness) -> None:
        self._p = politeness

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        waited = CounterMetricFamily(c.SITE_WAIT_SECONDS.name.removesuffix("_total"),
                                     c.SITE_WAIT_SECONDS.help, labels=["site"])
        for site, seconds in sorted(self._p.waited_seconds().items()):
            waited.add_metric([site], seconds)
        flying = GaugeMetricFamily(c.SITE_IN_FLIGHT.name, c.SITE_IN_FLIGHT.help, labels=["site"])
        for site, count in sorted(self._p.in_flight().items()):
            flying.add_metric([site], float(count))
        yield waited
        yield flying


def first_run_offset(site: str, index: int, count: int, interval: float) -> float:
    """Offset in [0, interval) of the first run of a site's ``index``-th of ``count`` checks:
    the site's checks evenly spaced over the interval, from a stable point of the site's name."""
    digest = hashlib.sha256(site.encode()).digest()
    base = int.from_bytes(digest[:8], "big") / 2**64
    return ((base + index / max(1, count)) % 1.0) * interval


def stagger(planned_sites: list[str]) -> list[float]:
    """``storewatch check``: start delays, the checks of one site ``CHECK_STAGGER_S`` apart
    (sites start together), for checks listed with their site names."""
    seen: dict[str, int] = {}
    delays = []
    for site in planned_sites:
        index = seen.get(site, 0)
        seen[site] = index + 1
        delays.append(index * CHECK_STAGGER_S)
    return delays
