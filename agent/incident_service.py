"""The daemon's incident side: a queue of observations for the engine, and the outbox worker.

Observations arrive from the scheduler (a sync callback); one consumer task applies them in
order (asking the connectivity guard first when a run failed), then wakes the outbox worker.

If the store cannot be opened (state directory unusable) or stops taking writes (disk full),
probing and ``/metrics`` go on: ``StateHealth`` logs one line and sets
``storewatch_state_writable`` to 0; the store is tried again every ``REOPEN_SECONDS`` and every
observation is tried again, so saving resumes by itself once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import httpx

from agent.config.schema import Config
from agent.connectivity import ConnectivityGuard
from agent.errors import StateError
from agent.httpclient import HttpClients
from agent.incidents import IncidentEngine
from agent.metrics.incidents import IncidentMetrics
from agent.pipeline import Observation
from agent.sinks import build_sink
from agent.sinks.base import SinkBuildContext, TicketSink
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.state_health import StateHealth, is_state_error
from agent.store import IncidentRecord, Store, db_path

log = logging.getLogger(__name__)

REOPEN_SECONDS = 30.0
"""How often a store that could not be opened is tried again (on the next observation)."""


class IncidentService:
    """Engine + outbox for one running agent."""

    def __init__(self, config: Config, clients: HttpClients,
                 metrics: IncidentMetrics | None = None,
                 health: StateHealth | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health or StateHealth()
        self.guard = ConnectivityGuard(clients, config.incidents.reference_targets,
                                       timeout=min(5.0, config.defaults.timeout
                                                   or config.defaults.request_timeout))
        self._clients = clients
        self._http: httpx.AsyncClient | None = None
        self._queue: asyncio.Queue[Observation] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._store: Store | None = None
        self._engine: IncidentEngine | None = None
        self._outbox: Outbox | None = None
        self._tried_at = 0.0
        self._just_opened: list[tuple[IncidentRecord, str | None]] = []
        self._just_resolved: list[IncidentRecord] = []
        self._open_store()

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

    def _open_store(self) -> bool:
        """Open the store, engine and outbox if not yet open; False while that fails."""
        if self._store is not None:
            return True
        now = time.monotonic()
        if self._tried_at and now - self._tried_at < REOPEN_SECONDS:
            return False
        self._tried_at = now
        try:
            store = Store(db_path(self.config.agent.state_dir))
        except StateError as exc:
            self.health.failed(str(exc))
            return False
        self._store = store
        self._engine = IncidentEngine(store, self.config, self._opened,
                                      self._just_resolved.append)
        self._outbox = Outbox(store, self._build_sinks(self.config), self._site_info,
                              on_attempt=self.metrics.delivery if self.metrics else None,
                              health=self.health)
        self.health.saved()
        if self._tasks:  # running: deliver what the store already holds
            self._tasks.append(asyncio.create_task(self._outbox.run(self._stop), name="outbox"))
        return True

    def _build_sinks(self, config: Config) -> dict[str, TicketSink]:
        sinks: dict[str, TicketSink] = {}
        for name, sink_config in config.ticket_sinks().items():
            ctx = SinkBuildContext(name, self._sink_http, config.agent.state_dir,
                                   config.agent.user_agent)
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
                headers={"User-Agent": self.config.agent.user_agent})
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

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded config (routing, policy, sinks)."""
        self.config = config
        self.guard.targets = tuple(config.incidents.reference_targets)
        if self._engine is None or self._outbox is None:
            return  # the store is not open yet; it opens with this config
        self._engine.config = config
        old, self._outbox.sinks = self._outbox.sinks, self._build_sinks(config)
        _close(old.values())

    def submit(self, obs: Observation) -> None:
        """Queue an observation (called from the scheduler's callback)."""
        self._queue.put_nowait(obs)

    def start(self) -> None:
        """Start the engine consumer and the outbox worker."""
        self._tasks = [asyncio.create_task(self._consume(), name="incident-engine")]
        if self._outbox is not None:
            self._tasks.append(asyncio.create_task(self._outbox.run(self._stop), name="outbox"))

    async def _consume(self) -> None:
        while True:
            obs = await self._queue.get()
            await self.apply(obs)

    async def apply(self, obs: Observation) -> bool:
        """Apply one observation to the incidents; False if it could not be saved."""
        if not self._open_store():
            return False
        self._just_opened.clear()
        try:
            online = True
            if obs.result.findings:
                online = await self.guard.online()
            self.engine.handle(obs, online=online)
        except Exception as exc:
            self._just_opened.clear()  # rolled back: nothing was opened or resolved
            self._just_resolved.clear()
            if not is_state_error(exc):
                log.exception("incident engine failed on %s/%s", obs.result.site,
                              obs.result.check)
                return False
            self.health.failed(f"{self.store.path}: {exc}")
            return False
        self.health.saved()
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
            self._store.close()


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
