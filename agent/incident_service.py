"""The daemon's incident side: a queue of observations for the engine, and the outbox worker.

Observations arrive from the scheduler (a sync callback); one consumer task applies them in
order (asking the connectivity guard first when a run failed), then wakes the outbox worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import httpx

from agent.config.schema import Config
from agent.connectivity import ConnectivityGuard
from agent.httpclient import HttpClients
from agent.incidents import IncidentEngine
from agent.metrics.incidents import IncidentMetrics
from agent.pipeline import Observation
from agent.sinks import build_sink
from agent.sinks.base import SinkBuildContext, TicketSink
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.store import IncidentRecord, Store, db_path

log = logging.getLogger(__name__)


class IncidentService:
    """Engine + outbox for one running agent."""

    def __init__(self, config: Config, clients: HttpClients,
                 metrics: IncidentMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.store = Store(db_path(config.agent.state_dir))
        self.engine = IncidentEngine(self.store, config, self._opened)
        self.guard = ConnectivityGuard(clients, config.incidents.reference_targets,
                                       timeout=min(5.0, config.defaults.timeout))
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=False,
                                       headers={"User-Agent": config.agent.user_agent})
        self.outbox = Outbox(self.store, self._build_sinks(config), self._site_info,
                             on_attempt=metrics.delivery if metrics is not None else None)
        self._queue: asyncio.Queue[Observation] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _build_sinks(self, config: Config) -> dict[str, TicketSink]:
        sinks: dict[str, TicketSink] = {}
        for name, sink_config in config.ticket_sinks().items():
            ctx = SinkBuildContext(name, self._http, config.agent.state_dir,
                                   config.agent.user_agent)
            sinks[name] = build_sink(sink_config, ctx)
        return sinks

    def _site_info(self, site: str) -> SiteInfo:
        s = self.config.site(site)
        if s is None:
            return SiteInfo(dashboard_template=self.config.incidents.dashboard_url)
        return SiteInfo(s.plan, s.account_manager, self.config.incidents.dashboard_url)

    def _opened(self, record: IncidentRecord, no_ticket: str | None) -> None:
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
        self.engine.config = config
        self.guard.targets = tuple(config.incidents.reference_targets)
        old, self.outbox.sinks = self.outbox.sinks, self._build_sinks(config)
        _close(old.values())

    def submit(self, obs: Observation) -> None:
        """Queue an observation (called from the scheduler's callback)."""
        self._queue.put_nowait(obs)

    def start(self) -> None:
        """Start the engine consumer and the outbox worker."""
        self._tasks = [asyncio.create_task(self._consume(), name="incident-engine"),
                       asyncio.create_task(self.outbox.run(self._stop), name="outbox")]

    async def _consume(self) -> None:
        while True:
            obs = await self._queue.get()
            try:
                online = True
                if obs.result.findings:
                    online = await self.guard.online()
                self.engine.handle(obs, online=online)
                self.outbox.wake.set()
            except Exception:
                log.exception("incident engine failed on %s/%s", obs.result.site,
                              obs.result.check)

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
        _close(self.outbox.sinks.values())
        await self._http.aclose()
        self.store.close()


def _close(sinks: Iterable[TicketSink]) -> None:
    """Close sinks that hold resources of their own (e.g. the sqlite sink's connection)."""
    for sink in sinks:
        close = getattr(sink, "close", None)
        if callable(close):
            close()
