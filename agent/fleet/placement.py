"""Which agent of a fleet runs which check: heartbeats, leases of ``placement: one`` checks,
failover.

Agents that share one store (``agent.state``: a PostgreSQL database, or one SQLite file) see
each other:

* **Heartbeats.** Every agent writes a heartbeat (table ``agents``) every ``HEARTBEAT_SECONDS``
  and reads back everybody's: ``storewatch_fleet_agent_up{agent,location}`` is 1 for an agent
  heard from within ``ALIVE_HEARTBEATS`` heartbeats, 0 for one silent longer (rows silent for
  a day are deleted). A heartbeat that finds another process's token in its row after this
  process's first one means a live twin with the same name: logged as an error and shown in
  ``storewatch_fleet_name_conflict``.
* **placement: every** (the default): each agent runs the check, one observation per location.
* **placement: one**: before each run the agent takes or renews the check's lease (table
  ``leases``) with a compare-and-set (``Store.claim_lease``): it wins when nobody holds the
  lease, when it holds it already, or when the holder's lease has expired. The winner runs the
  check and holds the lease for ``lease_seconds`` = interval x (1 + jitter) + grace (grace:
  ``LEASE_GRACE_SHARE`` of the interval, at least ``LEASE_GRACE_MIN_S``), so a holder that
  runs on schedule always renews in time. Every other agent stands by: it skips the run and
  drops its own last result of the check, so its /metrics show no stale result.
* **Failover.** An agent that dies stops renewing; the first other agent whose run of the check
  comes due after the lease expired takes it over. The check therefore runs again at most one
  interval plus the lease after its last run (``lease_seconds`` + interval).
* **Lease loss.** An agent that finds its lease taken (it renewed too late: stalled, paused,
  cut off from the store) logs it, counts it (``storewatch_fleet_lease_losses_total``) and
  stands by; it runs the check again only once it wins the lease again.
* **Clean stop.** ``stop`` releases this agent's leases: the others take over at their next
  run instead of waiting for the lease to expire.
* **Store unreachable.** When a claim fails or takes longer than ``CLAIM_TIMEOUT_S`` (or fails
  for a bug, logged with its traceback), the agent runs its ``placement: one`` checks anyway,
  without a lease: a lost L1 is worse than a check run twice. One line says when that starts
  and one when coordination works again; ``storewatch_fleet_store_reachable`` is 0 meanwhile
  and such runs are counted in
  ``storewatch_fleet_unclaimed_runs_total``.

Every store call runs in this module's own thread (``StoreThread``) on its own connection: a
locked or slow store never blocks the event loop, and incident writes never delay a claim.
Lease times come from the agents' clocks, which must agree (NTP); the grace absorbs a few
seconds of skew. Agent names must be unique in a fleet (a lease is bound to one process by a
random token, so two agents with one name never share a lease, but their heartbeats mix and
each one's restart takes back the other's outbox claims).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.config.schema import Config, Placement, PlannedCheck
from agent.config.secrets import scrub
from agent.metrics import catalog as c
from agent.state.health import is_state_error
from agent.state.store import FleetAgent, LeaseClaim, Store
from agent.state.thread import StoreThread

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
"""How often an agent writes its heartbeat and reads everybody's."""
ALIVE_HEARTBEATS = 3
"""An agent not heard from for this many heartbeats is not alive."""
FORGET_SECONDS = 86_400.0
"""Agents silent for this long leave the ``agents`` table (and the metrics)."""
LEASE_GRACE_MIN_S = 3.0
LEASE_GRACE_SHARE = 0.25
"""A lease outlives the holder's next due run by this share of the interval (at least
``LEASE_GRACE_MIN_S``): room for a late start on a loaded machine before another agent may
take over."""
CLAIM_TIMEOUT_S = 5.0
"""A heartbeat or claim that has not finished by then counts as the store being unreachable."""


def lease_seconds(interval: float, jitter: float) -> float:
    """How long a won lease of a check with ``interval`` lasts (``jitter``: the agent's random
    start delay as a share of the interval; the next run is due at most that much late)."""
    return interval * (1.0 + jitter) + max(LEASE_GRACE_MIN_S, LEASE_GRACE_SHARE * interval)


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FleetPlacement:
    """This agent's side of the fleet: its heartbeat and its leases.

    ``may_run`` is the scheduler's gate before each run; ``start``/``stop`` run the heartbeat.
    """

    def __init__(self, config: Config, registry: CollectorRegistry | None = None, *,
                 heartbeat_s: float = HEARTBEAT_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = config.agent.name
        self.location = config.agent.location
        self.store_location = config.agent.store_location
        self.jitter = config.agent.jitter
        self.heartbeat_s = heartbeat_s
        self.token = secrets.token_hex(8)
        """Binds leases to this process (a restarted agent of the same name is another one)."""
        self._clock = clock
        self.started_at = clock()
        self._db = StoreThread()
        self._store: Store | None = None
        self._held: set[str] = set()
        self._agents: tuple[FleetAgent, ...] = ()
        self._failing: str | None = None
        self._reachable = True
        self._beats = 0
        self.name_conflict = False
        """Whether another live process writes heartbeats under this agent's name."""
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.runs = Counter(c.FLEET_CHECK_RUNS.name.removesuffix("_total"),
                            c.FLEET_CHECK_RUNS.help, list(c.FLEET_CHECK_RUNS.labels),
                            registry=registry)
        self.lease_losses = Counter(c.FLEET_LEASE_LOSSES.name.removesuffix("_total"),
                                    c.FLEET_LEASE_LOSSES.help, list(c.FLEET_LEASE_LOSSES.labels),
                                    registry=registry).labels(self.name)
        self.unclaimed_runs = Counter(c.FLEET_UNCLAIMED_RUNS.name.removesuffix("_total"),
                                      c.FLEET_UNCLAIMED_RUNS.help,
                                      list(c.FLEET_UNCLAIMED_RUNS.labels),
                                      registry=registry).labels(self.name)
        registry.register(_FleetCollector(self))

    # -- the scheduler's gate ------------------------------------------------------------------

    async def may_run(self, planned: PlannedCheck) -> bool:
        """Whether this agent runs ``planned`` now: always for ``placement: every``; for
        ``placement: one`` when it wins the lease (or cannot reach the store)."""
        if planned.placement is not Placement.ONE:
            self._count(planned)
            return True
        now = self._clock()
        expires = now + lease_seconds(planned.interval, self.jitter)
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT_S):
                claim = await self._db.run(self._claim, planned, now, expires)
        except Exception as exc:
            if _unreachable(exc):
                self._failed(f"cannot claim the lease of {planned.key}", exc)
            else:  # a bug: it must not stop the check either
                log.exception("claiming the lease of %s failed; running it here without one",
                              planned.key)
            self.unclaimed_runs.inc()
            self._count(planned)
            return True
        self._worked()
        return self._decide(planned, claim)

    def _decide(self, planned: PlannedCheck, claim: LeaseClaim) -> bool:
        key = planned.key
        if claim.won:
            if key not in self._held:
                self._held.add(key)
                how = (f"taken over from {claim.taken_from}, whose lease expired"
                       if claim.taken_from else "a new lease")
                log.info("%s (placement: one) runs on this agent (%s) now: %s", key, self.name,
                         how)
            self._count(planned)
            return True
        if key in self._held:
            self._held.discard(key)
            self.lease_losses.inc()
            log.warning("%s (placement: one): lost its lease to agent %s (not renewed in "
                        "time); standing by", key, claim.holder)
        return False

    def _count(self, planned: PlannedCheck) -> None:
        self.runs.labels(self.name, planned.site.name, planned.check.name,
                         planned.placement.value).inc()

    @property
    def held(self) -> frozenset[str]:
        """Keys (``site/check``) of the checks whose lease this agent holds."""
        return frozenset(self._held)

    @property
    def agents(self) -> tuple[FleetAgent, ...]:
        """The fleet as the last heartbeat read it."""
        return self._agents

    @property
    def reachable(self) -> bool:
        """Whether the last heartbeat or claim reached the shared store."""
        return self._reachable

    def now(self) -> float:
        """The clock leases and heartbeats are measured on (Unix seconds)."""
        return self._clock()

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded config: its jitter for new leases; the leases of checks that are no
        longer ``placement: one`` here are released (another agent that still runs them takes
        over at its next run). A changed ``agent.name``/``location`` needs a restart."""
        self.jitter = config.agent.jitter
        wanted = {p.key for p in config.planned_checks() if p.placement is Placement.ONE}
        dropped = self._held - wanted
        if dropped:
            self._held &= wanted
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop (not running): the leases expire by themselves
                return
            task = asyncio.create_task(self._release_dropped(sorted(dropped)),
                                       name="fleet-release")
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release_dropped(self, keys: list[str]) -> None:
        pairs = [(site, check) for site, _, check in (k.partition("/") for k in keys)]
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT_S):
                await self._db.run(lambda: self._open().release_leases(self.token, pairs))
        except Exception as exc:
            if not _unreachable(exc):
                log.exception("could not release the leases of %s", ", ".join(keys))
                return
            log.warning("could not release the leases of %s (%s); they expire by themselves",
                        ", ".join(keys), scrub(str(exc)) or type(exc).__name__)
            return
        log.info("released the lease(s) of %s: no longer placement: one here",
                 ", ".join(keys))

    # -- heartbeat -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat (its first one now)."""
        self._task = asyncio.create_task(self._heartbeats(), name="fleet-heartbeat")

    async def beat(self) -> bool:
        """Write this agent's heartbeat and read the fleet's; False if the store could not be
        reached (reported once)."""
        now = self._clock()
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT_S):
                self._agents = await self._db.run(self._beat, now)
        except Exception as exc:
            if not _unreachable(exc):
                raise
            self._failed("cannot write the heartbeat", exc)
            return False
        self._worked()
        return True

    async def _heartbeats(self) -> None:
        while not self._stop.is_set():
            try:
                await self.beat()
            except Exception:  # a bug: keep the heartbeat going, say it with its traceback
                log.exception("fleet heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)

    async def stop(self) -> None:
        """Stop the heartbeat, release this agent's leases (others take over at their next run)
        and close the store."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        if self._held:
            try:
                async with asyncio.timeout(CLAIM_TIMEOUT_S):
                    released = await self._db.run(self._release)
                log.info("released %d lease(s) of placement: one checks", released)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                log.warning("could not release the leases of placement: one checks (%s); they "
                            "expire by themselves", scrub(str(exc)) or type(exc).__name__)
            self._held.clear()
        if self._store is not None:
            await self._db.run(self._store.close)
            self._store = None
        self._db.close()

    # -- in the store thread -------------------------------------------------------------------

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_location)
        return self._store

    def _beat(self, now: float) -> tuple[FleetAgent, ...]:
        store = self._open()
        replaced = store.heartbeat(self.name, self.location, self.token, __version__,
                                   _dt(self.started_at), _dt(now))
        # after this process's first heartbeat, only a live twin can have written the row
        self._name_conflict(self._beats > 0 and replaced not in (None, self.token))
        self._beats += 1
        if self._beats % 100 == 1:
            store.forget_agents(_dt(now - FORGET_SECONDS))
        return tuple(store.fleet_agents(_dt(now - FORGET_SECONDS)))

    def _claim(self, planned: PlannedCheck, now: float, expires: float) -> LeaseClaim:
        return self._open().claim_lease(planned.site.name, planned.check.name, self.name,
                                        self.token, _dt(now), _dt(expires))

    def _release(self) -> int:
        return self._open().release_leases(self.token)

    def _name_conflict(self, conflict: bool) -> None:
        if conflict and not self.name_conflict:
            log.error("another storewatch process also runs as agent %r (agent.name; the "
                      "default is the host name): give each agent its own name; with one name "
                      "they share a heartbeat and each one's restart takes back the other's "
                      "ticket claims", self.name)
        elif self.name_conflict and not conflict:
            log.warning("agent %r: no other process writes heartbeats under this name any more",
                        self.name)
        self.name_conflict = conflict

    # -- reachability --------------------------------------------------------------------------

    def _failed(self, what: str, exc: BaseException) -> None:
        reason = scrub(" ".join(f"{what}: {exc}".split())) if str(exc) else what
        if self._reachable:
            log.error("shared store unreachable (%s): placement: one checks run here without a "
                      "lease until it works again (other agents may run them too)", reason)
        self._reachable, self._failing = False, reason

    def _worked(self) -> None:
        if not self._reachable:
            log.warning("shared store reachable again: placement: one checks are coordinated "
                        "again (it failed: %s)", self._failing)
        self._reachable, self._failing = True, None


def _unreachable(exc: BaseException) -> bool:
    """The store could not be used (a timeout, a state error), as opposed to a bug."""
    return isinstance(exc, TimeoutError) or is_state_error(exc)


class _FleetCollector(Collector):
    """The fleet's gauges, rendered at scrape time from the last heartbeat's reading."""

    def __init__(self, placement: FleetPlacement) -> None:
        self._placement = placement

    def collect(self) -> Iterator[Metric]:
        """Fresh gauges each scrape."""
        p = self._placement
        up = GaugeMetricFamily(c.FLEET_AGENT_UP.name, c.FLEET_AGENT_UP.help,
                               labels=list(c.FLEET_AGENT_UP.labels))
        age = GaugeMetricFamily(c.FLEET_AGENT_HEARTBEAT_AGE.name,
                                c.FLEET_AGENT_HEARTBEAT_AGE.help,
                                labels=list(c.FLEET_AGENT_HEARTBEAT_AGE.labels))
        now = p.now()
        for agent in p.agents:
            labels = [agent.name, agent.location or ""]
            seconds = max(0.0, now - agent.heartbeat_at.timestamp())
            age.add_metric(labels, seconds)
            up.add_metric(labels, 1.0 if seconds <= ALIVE_HEARTBEATS * p.heartbeat_s else 0.0)
        held = GaugeMetricFamily(c.FLEET_LEASES_HELD.name, c.FLEET_LEASES_HELD.help,
                                 labels=list(c.FLEET_LEASES_HELD.labels))
        held.add_metric([p.name], float(len(p.held)))
        reachable = GaugeMetricFamily(c.FLEET_STORE_REACHABLE.name, c.FLEET_STORE_REACHABLE.help,
                                      labels=list(c.FLEET_STORE_REACHABLE.labels))
        reachable.add_metric([p.name], 1.0 if p.reachable else 0.0)
        conflict = GaugeMetricFamily(c.FLEET_NAME_CONFLICT.name, c.FLEET_NAME_CONFLICT.help,
                                     labels=list(c.FLEET_NAME_CONFLICT.labels))
        conflict.add_metric([p.name], 1.0 if p.name_conflict else 0.0)
        yield from (up, age, held, reachable, conflict)
