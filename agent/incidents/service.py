"""The daemon's incident side: a queue of observations for the engine, and the outbox worker.

Observations arrive from the scheduler (a sync callback) into a bounded queue
(agent/incidents/queue.py: past 1,000 waiting, the oldest non-L1 one is dropped; an L1 one
never is). One consumer task applies them in order (asking the connectivity guard first when a
run failed), then wakes the outbox. Every store call runs in one dedicated thread
(agent/state/thread.py), so a locked or slow database never stalls the event loop.

The consumer outlives any error: a bug in the engine or a sink that cannot be built when the
store is (re)opened is logged once (with its traceback), counted in
``storewatch_incident_errors_total``, and retried with backoff; a line says when handling
works again.

If the store cannot be opened (state directory unusable, PostgreSQL unreachable) or stops
taking writes (disk full, the database server stopped or cut off), probing and ``/metrics`` go
on: ``StateHealth`` logs one line and sets ``storewatch_state_writable`` to 0. The observation
that could not be saved is kept and tried again (every ``STATE_RETRY_MAX_SECONDS`` at most; a
store that could not be opened at all is reopened every ``REOPEN_SECONDS``, a lost PostgreSQL
connection is made again by the next call), and the ones arriving meanwhile wait behind it in
the queue (its overflow policy applies: L1 ones are never dropped). Once the store takes writes
again they are applied in order, each at the time it was observed, and
``storewatch_incident_queue_length`` shows the backlog shrinking: the agent catching up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import httpx

from agent.config.schema import Config
from agent.config.secrets import scrub
from agent.connectivity import ConnectivityGuard
from agent.errors import StateError
from agent.evidence import InUse, PruneResult, evidence_root, prune_forever
from agent.httpclient import HttpClients
from agent.identity import user_agent
from agent.incidents.engine import IncidentEngine
from agent.incidents.queue import QUEUE_SIZE, ObservationQueue
from agent.metrics.incidents import IncidentMetrics
from agent.pipeline import Observation
from agent.sinks import build_sink
from agent.sinks.base import SinkBuildContext, TicketSink
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.sinks.resend import Resender
from agent.state.health import StateHealth, is_state_error
from agent.state.store import IncidentRecord, Store
from agent.state.thread import StoreThread

log = logging.getLogger(__name__)

REOPEN_SECONDS = 30.0
"""How often a store that could not be opened is tried again (on the next observation)."""

RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
"""Backoff of the consumer after an error: 0.5 s doubling per failure in a row, at most 30 s."""

TRIES_PER_OBSERVATION = 3
"""How often one observation is tried before it is given up (its check runs again anyway)."""

STATE_RETRY_BASE_SECONDS = 0.5
STATE_RETRY_MAX_SECONDS = 10.0
"""An observation the store could not take is tried again after 0.5 s, doubling while the store
stays unusable, at most every 10 s."""

CATCH_UP_AFTER_SECONDS = 5.0
"""An observation applied this long after its run ended counts at its own time (catching up
after an outage of the store), not at the time it is applied."""


class IncidentService:
    """Engine + outbox for one running agent."""

    def __init__(self, config: Config, clients: HttpClients,
                 metrics: IncidentMetrics | None = None,
                 health: StateHealth | None = None, queue_size: int = QUEUE_SIZE) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health or StateHealth()
        self.guard = ConnectivityGuard(clients, config.incidents.reference_targets,
                                       timeout=min(5.0, config.defaults.timeout
                                                   or config.defaults.request_timeout))
        self._clients = clients
        self._http: httpx.AsyncClient | None = None
        self._queue = ObservationQueue(queue_size, self._dropped)
        self._db = StoreThread()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._store: Store | None = None
        self._engine: IncidentEngine | None = None
        self._outbox: Outbox | None = None
        self._tried_at = 0.0
        self._failing: str | None = None
        self._just_opened: list[tuple[IncidentRecord, str | None]] = []
        self._just_resolved: list[IncidentRecord] = []
        self._held = 0  # the observation the consumer keeps while the store cannot take it
        if metrics is not None:
            metrics.queue_length.set_function(self.waiting)
        try:
            store = Store(self.config.agent.store_location)
        except StateError as exc:
            self._tried_at = time.monotonic()
            self.health.failed(str(exc))
        else:  # a sink that cannot be built at start-up is the caller's error to report
            self._install(store, self._build_sinks(config))

    @property
    def store(self) -> Store:
        """The open incident store (a StateError while it cannot be opened)."""
        if self._store is None:
            raise StateError(self.health.reason or "the incident store is not open")
        return self._store

    @property
    def engine(self) -> IncidentEngine:
        """The incident engine on the open store."""
        if self._engine is None:
            raise StateError(self.health.reason or "the incident store is not open")
        return self._engine

    @property
    def outbox(self) -> Outbox:
        """The outbox of the open store."""
        if self._outbox is None:
            raise StateError(self.health.reason or "the incident store is not open")
        return self._outbox

    async def _open_store(self) -> bool:
        """Open the store, engine and outbox if not yet open; False while that fails (tried
        again at most every ``REOPEN_SECONDS``)."""
        if self._store is not None:
            return True
        now = time.monotonic()
        if self._tried_at and now - self._tried_at < REOPEN_SECONDS:
            return False
        self._tried_at = now
        try:
            store = await self._db.run(Store, self.config.agent.store_location)
        except StateError as exc:
            self.health.failed(str(exc))
            return False
        try:
            sinks = self._build_sinks(self.config)
        except Exception as exc:  # e.g. the sqlite sink cannot connect: try the whole again
            await self._db.run(store.close)
            self._trouble("cannot build the ticket sinks", exc)
            return False
        self._install(store, sinks)
        if self._tasks:  # running: deliver what the store already holds
            self._tasks.append(asyncio.create_task(self.outbox.run(self._stop), name="outbox"))
        return True

    def _install(self, store: Store, sinks: dict[str, TicketSink]) -> None:
        self._store = store
        self._engine = IncidentEngine(store, self.config, self._opened,
                                      self._just_resolved.append)
        self._outbox = Outbox(store, sinks, self._site_info,
                              on_attempt=self.metrics.delivery if self.metrics else None,
                              health=self.health, db=self._db,
                              attempt_timeout=self.config.incidents.delivery_timeout,
                              claimer=f"{self.config.agent.name}/{os.getpid()}",
                              on_claim=self.metrics.claim if self.metrics else None)
        self.health.saved()

    def _build_sinks(self, config: Config) -> dict[str, TicketSink]:
        sinks: dict[str, TicketSink] = {}
        for name, sink_config in config.ticket_sinks().items():
            ctx = SinkBuildContext(name, self._sink_http, config.agent.state_dir,
                                   user_agent(config.agent), config.incidents.evidence.url)
            sinks[name] = build_sink(sink_config, ctx)
        return sinks

    def _sink_http(self) -> httpx.AsyncClient:
        """The client tracker sinks share, made when the first sink asks for it (an agent with
        only the sqlite or email sink never builds an HTTP pool); it verifies TLS with the
        probes' shared SSL context (one trust store per agent)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0), follow_redirects=False,
                verify=self._clients.ssl_context(),
                headers={"User-Agent": user_agent(self.config.agent)})
        return self._http

    def _site_info(self, site: str) -> SiteInfo:
        s = self.config.site(site)
        if s is None:
            return SiteInfo(dashboard_template=self.config.incidents.dashboard_url)
        return SiteInfo(s.plan, s.account_manager, self.config.incidents.dashboard_url)

    def _opened(self, record: IncidentRecord, no_ticket: str | None) -> None:
        """Called by the engine inside its transaction: reported once that has committed."""
        self._just_opened.append((record, no_ticket))

    def _report_opened(self, record: IncidentRecord, no_ticket: str | None) -> None:
        level = str(record.level) if record.level is not None else "none"
        if no_ticket is None:
            log.warning("incident #%d opened: [%s] %s — %s: %s", record.id, level, record.site,
                        record.check, record.summary)
        else:
            log.info("incident #%d opened without a ticket (%s): [%s] %s — %s: %s", record.id,
                     no_ticket, level, record.site, record.check, record.summary)
        if self.metrics is not None:
            self.metrics.incident_opened(record.site, level)

    def prepare(self, config: Config) -> dict[str, TicketSink]:
        """Build the sinks of a reloaded config without using them yet (raises on failure;
        nothing changes then). Hand the result to ``reconfigure``."""
        return self._build_sinks(config) if self._outbox is not None else {}

    def reconfigure(self, config: Config, sinks: dict[str, TicketSink]) -> None:
        """Use a reloaded config (routing, policy) and the sinks ``prepare`` built for it."""
        self.config = config
        self.guard.targets = tuple(config.incidents.reference_targets)
        if self._engine is None or self._outbox is None:
            return  # the store is not open yet; it opens with this config
        self._engine.config = config
        self._outbox.attempt_timeout = config.incidents.delivery_timeout
        old, self._outbox.sinks = self._outbox.sinks, sinks
        _close(old.values())

    def discard(self, sinks: dict[str, TicketSink]) -> None:
        """Close sinks ``prepare`` built for a reload that did not happen."""
        _close(sinks.values())

    def submit(self, obs: Observation) -> None:
        """Queue an observation (called from the scheduler's callback)."""
        self._queue.put(obs)

    def waiting(self) -> int:
        """Observations not applied yet: queued, plus one held while the store is unusable."""
        return len(self._queue) + self._held

    def _dropped(self, obs: Observation) -> None:
        if self.metrics is not None:
            self.metrics.dropped.inc()
        log.debug("incident queue full: dropped the run of %s/%s", obs.result.site,
                  obs.result.check)

    def start(self) -> None:
        """Start the engine consumer and the outbox worker."""
        self._tasks = [asyncio.create_task(self._consume(), name="incident-engine")]
        if self._outbox is not None:
            self._tasks.append(asyncio.create_task(self._outbox.run(self._stop), name="outbox"))
        resender = Resender(lambda: self.outbox)  # keeps Alertmanager's alerts of open incidents
        self._tasks.append(asyncio.create_task(resender.run(self._stop), name="resend"))
        self._tasks.append(asyncio.create_task(prune_forever(
            evidence_root(self.config.agent.state_dir), self._evidence_in_use,
            lambda: (self.config.incidents.evidence.retention,
                     self.config.incidents.evidence.max_size),
            self._stop, swept=self._evidence_swept), name="evidence-pruning"))

    async def _evidence_in_use(self, cutoff: float) -> InUse | None:
        """Evidence the pruning keeps (None while the store is not open: nothing is pruned)."""
        if not await self._open_store():
            return None
        return await self._db.run(self.store.evidence_in_use, datetime.fromtimestamp(cutoff, UTC))

    def _evidence_swept(self, result: PruneResult) -> None:
        if self.metrics is not None:
            self.metrics.evidence_pruned(result.deleted_files)

    async def _consume(self) -> None:
        """Apply queued observations in order for as long as the agent runs; an error is
        reported (``_trouble``) and the observation tried again after a backoff (given up after
        ``TRIES_PER_OBSERVATION``); one the store cannot take is kept and tried again until it
        can, while the next ones wait in the queue."""
        failures = 0
        while True:
            obs = await self._queue.get()
            unsaved = 0
            attempt = 1
            while attempt <= TRIES_PER_OBSERVATION:
                try:
                    saved = await self.apply(obs)
                except Exception as exc:
                    failures += 1
                    self._trouble(f"incident engine failed on {obs.result.site}/"
                                  f"{obs.result.check}", exc)
                    if attempt == TRIES_PER_OBSERVATION:
                        log.warning("gave up the run of %s/%s after %d tries; its check runs "
                                    "again", obs.result.site, obs.result.check, attempt)
                    await asyncio.sleep(min(RETRY_MAX_SECONDS,
                                            RETRY_BASE_SECONDS * 2.0 ** (failures - 1)))
                    attempt += 1
                else:
                    failures = 0
                    if saved:
                        break
                    unsaved += 1  # the store cannot take it now: keep it (not a try used up)
                    self._held = 1
                    await asyncio.sleep(min(STATE_RETRY_MAX_SECONDS,
                                            STATE_RETRY_BASE_SECONDS * 2.0 ** (unsaved - 1)))
            self._held = 0

    def _trouble(self, what: str, exc: Exception) -> None:
        """Count an agent-side error; log it (with its traceback) only when it is news."""
        if self.metrics is not None:
            self.metrics.errors.inc()
        if self._failing is None:
            log.error("%s; retrying with backoff", scrub(what), exc_info=exc)
        self._failing = what

    def _recovered(self) -> None:
        if self._failing is not None:
            log.warning("incident handling works again (it failed: %s)", scrub(self._failing))
            self._failing = None

    async def apply(self, obs: Observation) -> bool:
        """Apply one observation to the incidents; False if it could not be saved (state
        errors are reported to ``health``); an agent error (a bug) is raised."""
        if not await self._open_store():
            return False
        self._just_opened.clear()
        self._just_resolved.clear()
        try:
            online = True
            if obs.result.findings:
                online = await self.guard.online()
            await self._db.run(self.engine.handle, obs, online=online, now=_catch_up_time(obs))
        except Exception as exc:
            self._just_opened.clear()  # rolled back: nothing was opened or resolved
            self._just_resolved.clear()
            if not is_state_error(exc):
                raise
            self.health.failed(str(exc) if isinstance(exc, StateError)
                               else f"{self.store.where}: {exc}")
            return False
        self.health.saved()
        self._recovered()
        for record, no_ticket in self._just_opened:
            self._report_opened(record, no_ticket)
        self._just_opened.clear()
        for record in self._just_resolved:
            _report_resolved(record)
        self._just_resolved.clear()
        self.outbox.wake.set()
        return True

    async def stop(self) -> None:
        """Finish queued observations briefly, stop the worker, close the store."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                while not self._queue.empty():
                    await asyncio.sleep(0.05)
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._outbox is not None:
            _close(self._outbox.sinks.values())
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            await self._db.run(self._store.close)
        self._db.close()


def _catch_up_time(obs: Observation) -> datetime | None:
    """When ``obs``'s run ended if that is ``CATCH_UP_AFTER_SECONDS`` ago or more (the engine
    then applies it at that time), else None (now)."""
    ended = obs.result.started_at + timedelta(seconds=obs.result.duration_s)
    late = (datetime.now(UTC) - ended).total_seconds() >= CATCH_UP_AFTER_SECONDS
    return ended if late else None


def _report_resolved(record: IncidentRecord) -> None:
    """The INFO line of a resolved incident, the counterpart of the "opened" line."""
    level = str(record.level) if record.level is not None else "none"
    lasted = ""
    if record.opened_at is not None and record.resolved_at is not None:
        lasted = f" after {int((record.resolved_at - record.opened_at).total_seconds())}s open"
    log.info("incident #%d resolved%s: [%s] %s — %s: %s", record.id, lasted, level,
             record.site, record.check, record.kind.value)


def _close(sinks: Iterable[TicketSink]) -> None:
    """Close sinks that hold resources of their own (e.g. the sqlite sink's connection)."""
    for sink in sinks:
        close = getattr(sink, "close", None)
        if callable(close):
            close()
