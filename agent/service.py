"""The running agent: builds the stack from a config, runs the daemon or one pass of checks.

``Agent`` owns the shared HTTP clients, the classifier, the latest results, the metrics
registry and server, the scheduler and the host monitor (``host:``). SIGHUP reloads the config:
everything the new config needs (sinks, classifier, schedule, host reader) is built first and
swapped in in one step; any failure keeps the old config whole, logs one line and sets
``storewatch_config_last_reload_successful`` to 0. SIGTERM/SIGINT stop scheduling, let in-flight
checks finish for a few seconds, and exit cleanly. Under systemd it reports
READY/RELOADING/STOPPING and pings the watchdog from the event loop (agent/systemd.py), but only
while checks actually run: once the scheduler has stalled (no job fired for 3 x the shortest
interval) the pings stop, so systemd restarts the agent, and ``/healthz`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.loader import load_config
from agent.config.schema import Config, HostSettings, PlannedCheck, split_listen
from agent.config.secrets import scrub
from agent.errors import ConfigError, StorewatchError
from agent.evidence import evidence_root
from agent.fleet.placement import FleetPlacement
from agent.host.monitor import HostMonitor
from agent.httpclient import HttpClients
from agent.identity import describe, keep_identity
from agent.incidents.service import IncidentService
from agent.metrics.collectors import AgentMetrics
from agent.metrics.incidents import IncidentMetrics
from agent.metrics.server import MetricsServer
from agent.metrics.webconfig import load_web_config
from agent.pipeline import Classifier, LatestResults, Observation
from agent.politeness import stagger
from agent.report import ChangeTracker
from agent.scheduler import CheckRunner, CheckScheduler
from agent.state.baselines import BaselineStore
from agent.state.health import StateHealth
from agent.systemd import Notifier

log = logging.getLogger(__name__)

DRAIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values that win over the config file."""

    listen: str | None = None
    state_dir: Path | None = None
    web_config: Path | None = None
    """``--web.config.file``: TLS and basic auth for /metrics (agent/metrics/webconfig.py)."""


def load(path: str | Path, overrides: Overrides = Overrides()) -> Config:
    """Load and validate ``path``, then apply command-line overrides."""
    config = load_config(path, Config)
    update: dict[str, Any] = {}
    if overrides.listen is not None:
        split_listen(overrides.listen)  # same validation as the file
        update["listen"] = overrides.listen
    if overrides.state_dir is not None:
        update["state_dir"] = overrides.state_dir
    if update:
        config = config.model_copy(update={"agent": config.agent.model_copy(update=update)})
    _browser_ready(config, path)
    for site in config.sites:
        if not site.tls.verify:
            log.warning("TLS verification is OFF for site %s: certificate problems of %s will "
                        "not be seen and its traffic can be intercepted", site.name, site.base_url)
    return config


def _browser_ready(config: Config, path: str | Path) -> None:
    """With browser checks: Playwright and a supported Chromium are there (else one line)."""
    if not any(c.type == "browser" for s in config.sites for c in s.checks):
        return
    from agent.browser.support import browser_problem

    problem = browser_problem(config.agent.browser.executable_path)
    if problem is not None:
        raise ConfigError(problem, file=str(path), field="agent.browser")
    from agent.browser.runtime import configure  # Playwright is there (checked above)

    configure(config.agent.browser)


async def _close_browser() -> None:
    """Stop the shared browser if a browser check started one."""
    runtime = sys.modules.get("agent.browser.runtime")
    if runtime is not None:
        await runtime.close_shared_runtime()


class Agent:
    """The daemon: scheduler, probes and /metrics for one config."""

    def __init__(self, config_path: str | Path, config: Config, overrides: Overrides = Overrides(),
                 on_observation: Callable[[Observation], None] | None = None,
                 log_changes: bool = True) -> None:
        self.config_path = config_path
        self.config = config
        self.overrides = overrides
        self.latest = LatestResults()
        self.metrics = AgentMetrics(self.latest, config.agent)
        self.clients = HttpClients.for_agent(config.agent)
        self.changes = ChangeTracker() if log_changes else None
        self._extra_handler = on_observation
        self.runner = CheckRunner(self.clients, Classifier(config), self.latest, self.metrics,
                                  config.agent.concurrency, self._observed)
        self.fleet = FleetPlacement(config, self.metrics.registry)
        self.scheduler = CheckScheduler(self.runner, gate=self.fleet.may_run)
        self.host = HostMonitor(self.clients, self.runner.record)
        self.host.apply(config.host)
        self.metrics.registry.register(self.host.collector())
        self.metrics.registry.register(self.scheduler.collector())
        self.metrics.registry.register(self.clients.politeness.collector())
        self.notifier = Notifier()
        host, port = split_listen(config.agent.listen)
        web = load_web_config(overrides.web_config) if overrides.web_config else None
        try:
            self.server = MetricsServer(host, port, self.metrics.registry, self._health, web,
                                        str(overrides.web_config),
                                        evidence_root=evidence_root(config.agent.state_dir))
        except OSError as exc:
            raise StorewatchError(f"cannot listen on {config.agent.listen} for /metrics: "
                                  f"{exc.strerror or exc}") from None
        self.state = StateHealth(self.metrics.registry)
        self.incident_metrics = IncidentMetrics(self.metrics.registry,
                                                config.agent.store_location,
                                                config.agent.state_dir)
        self.incidents = IncidentService(config, self.clients, self.incident_metrics, self.state)
        self._started = time.time()
        self._stop = asyncio.Event()
        self._frozen = False

    @property
    def metrics_url(self) -> str:
        """Where /metrics is served."""
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"{self.server.scheme}://{host}:{self.server.port}/metrics"

    def _observed(self, obs: Observation) -> None:
        for change in self.changes.update(obs) if self.changes is not None else ():
            level = change.item.decision.level if change.item is not None else None
            log.log(logging.WARNING if level is not None and level <= 2 else logging.INFO,
                    "%s", change.line())
        self.incidents.submit(obs)
        if self._extra_handler is not None:
            self._extra_handler(obs)

    def _health(self) -> dict[str, Any]:
        """``/healthz``: status ``stalled`` (HTTP 503) once checks have stopped running."""
        return {"status": "stalled" if self.scheduler.stalled() else "ok",
                "uptime_seconds": round(time.time() - self._started, 3),
                "checks": len(self.config.planned_checks()),
                "results": len(self.latest.snapshot())}

    def _prepare_state_dir(self) -> bool:
        state_dir = self.config.agent.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.state.failed(f"state directory {state_dir} is not usable "
                              f"({exc.strerror or exc})")
            return False
        return True

    def reload(self) -> bool:
        """Reload the config file; on error keep running the current one."""
        self.notifier.reloading()
        try:
            return self._reload()
        finally:
            self.notifier.ready(self._status())

    def _status(self) -> str:
        return (f"{len(self.config.planned_checks())} checks on {len(self.config.sites)} sites; "
                f"metrics at {self.metrics_url}")

    def _reload(self) -> bool:
        if self._frozen:
            gc.unfreeze()  # the replaced config may be garbage in cycles: let the collector see it
        try:
            return self._apply_reload()
        finally:
            if self._frozen:
                _freeze_heap()

    def _apply_reload(self) -> bool:
        try:
            config = load(self.config_path, self.overrides)
        except ConfigError as exc:
            for line in exc.lines():
                log.error("reload failed, keeping the running config: %s", line)
            self.metrics.config_loaded(False)
            return False
        config, changed = keep_identity(config, self.config)
        if changed:
            log.warning("agent.%s changed; restart the agent to use the new value",
                        "/".join(changed))
        sinks = None
        try:  # build everything first: nothing running changes until all of it exists
            sinks = self.incidents.prepare(config)
            classifier = Classifier(config)
            reader = self.host.prepare(config.host)
            plan = self.scheduler.plan(config, self.host.jobs(config.host))
        except Exception as exc:
            if sinks is not None:
                self.incidents.discard(sinks)
            log.error("reload failed, keeping the running config: %s",
                      scrub(" ".join(str(exc).split()) or type(exc).__name__))
            log.debug("reload failure", exc_info=exc)
            self.metrics.config_loaded(False)
            return False
        if config.agent.listen != self.config.agent.listen:
            log.warning("agent.listen changed; restart the agent to rebind /metrics")
        if config.agent.state_dir != self.config.agent.state_dir:
            log.warning("agent.state_dir changed; restart the agent to use the new one")
        if config.agent.state != self.config.agent.state:
            log.warning("agent.state changed; restart the agent to use the new store")
        if (config.agent.name, config.agent.location) != (self.fleet.name, self.fleet.location):
            log.warning("agent.name or agent.location changed; restart the agent to use them in "
                        "the fleet (heartbeats, leases)")
        # the swap: plain assignments and scheduler bookkeeping, nothing that builds or connects
        self.config = config
        self.incidents.reconfigure(config, sinks)
        self.runner.classifier = classifier
        self.fleet.reconfigure(config)
        self.host.apply(config.host, reader)
        self.scheduler.commit(plan)
        self.latest.retain([*((p.site.name, p.check.name) for p in config.planned_checks()),
                            *self.host.result_keys()])
        self.metrics.config_loaded(True, config)
        log.info("config reloaded: %d sites, %d checks", len(config.sites),
                 len(config.planned_checks()))
        return True

    def stop(self) -> None:
        """Ask ``serve`` to finish (safe from signal handlers)."""
        self._stop.set()

    async def serve(self, duration: float | None = None, *, freeze_heap: bool = False) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT), or for ``duration`` seconds.

        ``freeze_heap`` (the daemon: the process is this agent) hides the objects alive once
        started from the garbage collector (see ``_freeze_heap``).
        """
        loop = asyncio.get_running_loop()
        if self._prepare_state_dir():  # else one line said so already
            self.runner.baselines = BaselineStore.open(self.config.agent.state_dir)
        self.server.start()
        self.scheduler.apply(self.config, self.host.jobs())
        self.metrics.config_loaded(True, self.config)
        self.fleet.start()  # first heartbeat before the first run
        self.scheduler.start()
        self.incidents.start()
        self.host.start()
        watchdog = asyncio.create_task(
            self.notifier.watchdog_loop(lambda: not self.scheduler.stalled()), name="watchdog")
        installed: list[signal.Signals] = []
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        log.info("storewatch running: %d checks on %d sites as %s; metrics at %s",
                 len(self.config.planned_checks()), len(self.config.sites),
                 describe(self.config.agent), self.metrics_url)
        if freeze_heap:
            _freeze_heap()
            self._frozen = True
        self.notifier.ready(self._status())
        try:
            if duration is None:
                await self._stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), duration)
        finally:
            self.notifier.stopping()
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.host.stop()
            await self.scheduler.shutdown(DRAIN_SECONDS)
            await self.fleet.stop()  # after the last run: releases this agent's leases
            await self.incidents.stop()
            watchdog.cancel()
            await _close_browser()
            await self.clients.aclose()
            if self.runner.baselines is not None:
                self.runner.baselines.close()
            self.server.stop()
            self.incident_metrics.close()
            log.info("storewatch stopped")


def _freeze_heap() -> None:
    """Collect start-up garbage, then move every live object out of the collector's sight.

    Modules, config models and the scheduler's jobs live as long as the process; without this,
    each full collection of an idle agent walks all ~45,000 of them (about 16 ms, once every
    half minute or so). Reload unfreezes first, so a replaced config can still be collected.
    """
    gc.collect()
    gc.freeze()


async def check_once(config: Config, site: str | None = None,
                     state_dir: Path | None = None) -> list[Observation]:
    """Run every check (of ``site``, if given) once, concurrently within the global limit and
    each site's politeness limit, the checks of one site started a little apart. Baselines are
    written to ``state_dir`` only when it is given; otherwise the run judges against a scratch
    copy of ``agent.state_dir``'s baselines and leaves them untouched."""
    planned = [p for p in config.planned_checks() if site is None or p.site.name == site]
    clients = HttpClients.for_agent(config.agent)
    baselines = (BaselineStore.open(state_dir) if state_dir is not None
                 else BaselineStore.scratch(config.agent.state_dir))
    runner = CheckRunner(clients, Classifier(config), LatestResults(), None,
                         config.agent.concurrency, baselines=baselines)

    async def run_after(delay: float, planned_check: PlannedCheck) -> Observation:
        await asyncio.sleep(delay)
        return await runner.run(planned_check)

    delays = stagger([p.site.name for p in planned])
    try:
        observations = list(await asyncio.gather(*(run_after(d, p)
                                                   for d, p in zip(delays, planned, strict=True))))
        if config.host is not None and site in (None, config.host.site):
            observations += await _check_host_once(config.host, clients, runner)
        return observations
    finally:
        await _close_browser()
        await clients.aclose()
        if baselines is not None:
            baselines.close()


async def _check_host_once(settings: HostSettings, clients: HttpClients,
                           runner: CheckRunner) -> list[Observation]:
    """One run of the host checks (no CPU or paging rates: those need two readings)."""
    host = HostMonitor(clients, runner.record)
    host.apply(settings)
    await host.check_host(settings)
    if settings.mail_queue is not None:
        await host.check_mail(settings.site, settings.mail_queue)
    keys = set(host.result_keys())
    return [o for o in runner.latest.snapshot() if (o.result.site, o.result.check) in keys]
