"""Runs every configured check on its interval: APScheduler (asyncio) jobs, one per check.

* Each site's checks have their first runs evenly spread over the interval from a stable hash
  of the site's name (agent/politeness.py: a site never gets all its checks at once), and every run
  gets up to ``jitter`` x interval of random delay, so a thousand checks never fire at once.
* A check never overlaps itself (``max_instances=1``); a run that would overlap is counted as
  ``skipped``.
* A global semaphore bounds how many checks run at once.
* Each run has a deadline (its timeout plus a grace); past it the probe is cancelled and
  reported as a finding, without delaying any other check.
* Lateness (scheduled fire time to probe start, queueing for the semaphore included) is
  recorded in a histogram.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.baselines import BaselineStore
from agent.config.schema import Config, PlannedCheck
from agent.httpclient import HttpClients
from agent.metrics.collectors import AgentMetrics
from agent.pipeline import Classifier, LatestResults, Observation
from agent.politeness import first_run_offset
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded

log = logging.getLogger(__name__)

ObservationHandler = Callable[[Observation], None]


class CheckRunner:
    """Runs one check once: concurrency slot, guarded probe, classification, bookkeeping."""

    def __init__(self, clients: HttpClients, classifier: Classifier, latest: LatestResults,
                 metrics: AgentMetrics | None, concurrency: int,
                 on_observation: ObservationHandler | None = None,
                 baselines: BaselineStore | None = None) -> None:
        self.clients = clients
        self.baselines = baselines
        self.classifier = classifier
        self.latest = latest
        self.metrics = metrics
        self.on_observation = on_observation
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, planned: PlannedCheck, scheduled_at: float | None = None) -> Observation:
        """Run ``planned`` now (``scheduled_at``: the Unix time it was due, for lateness)."""
        async with self._slots:
            if scheduled_at is not None and self.metrics is not None:
                self.metrics.lateness.observe(max(0.0, time.time() - scheduled_at))
            probe = PROBES[planned.check.type]
            ctx = ProbeContext(self.clients, planned.site, planned.timeout,
                               baselines=self.baselines, request_timeout=planned.request_timeout)
            result = await run_guarded(probe, planned.check, ctx)
        return self.record(result)

    def record(self, result: ProbeResult) -> Observation:
        """Classify ``result``, keep it as the latest, count it and hand it on.

        ``run`` ends here; checks without a probe (the host checks) call it directly.
        """
        observation = self.classifier.observe(result)
        self.latest.put(observation)
        if self.metrics is not None:
            deadline = any(f.evidence.details.get("failure") == "deadline"
                           for f in result.findings)
            outcome = "success" if result.success else "deadline" if deadline else "failure"
            self.metrics.observed(observation, outcome)
        if self.on_observation is not None:
            try:
                self.on_observation(observation)
            except Exception:
                log.exception("observation handler failed for %s/%s", result.site, result.check)
        return observation


def start_offset(key: str, interval: float) -> float:
    """Stable offset in [0, interval) for a check's first run, from its key (not ``hash()``)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def _spread_by_site(planned: list[PlannedCheck]) -> dict[str, float]:
    """First-run offsets: each site's checks evenly spaced over their interval (politeness)."""
    by_site: dict[str, list[PlannedCheck]] = {}
    for p in planned:
        by_site.setdefault(p.site.name, []).append(p)
    return {p.key: first_run_offset(site, i, len(checks), p.interval)
            for site, checks in by_site.items() for i, p in enumerate(checks)}


class _DirectTimerScheduler(AsyncIOScheduler):  # type: ignore[misc]  # untyped library
    """AsyncIOScheduler whose own timer processes the due jobs in place.

    The stock timer calls ``wakeup``, which is thread-safe and therefore re-posts itself with
    ``call_soon_threadsafe`` (a self-pipe write, one more loop turn and a read) although the
    timer already runs on the loop: a cost paid on every fired job. ``wakeup`` from other code
    (adding, changing or resuming jobs) keeps the stock path.
    """

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


class CheckScheduler:
    """APScheduler wrapper: one interval job per configured check."""

    def __init__(self, runner: CheckRunner, *, spread_first_runs: bool = True) -> None:
        self.runner = runner
        self._spread = spread_first_runs
        self._scheduler = _DirectTimerScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self._planned: dict[str, PlannedCheck] = {}
        self._due: dict[str, float] = {}
        self._inflight: set[asyncio.Task[Any]] = set()

    def apply(self, config: Config) -> None:
        """(Re)schedule exactly the checks of ``config``; unchanged checks keep their timing."""
        planned = {p.key: p for p in config.planned_checks()}
        for key in set(self._planned) - set(planned):
            self._scheduler.remove_job(key)
        now = datetime.now(UTC)
        offsets = _spread_by_site(list(planned.values()))
        for key, p in planned.items():
            old = self._planned.get(key)
            if old is not None and old == p:
                continue
            if old is not None:
                self._scheduler.remove_job(key)
            offset = offsets[key] if self._spread else 0.0
            trigger = IntervalTrigger(seconds=p.interval, start_date=now + timedelta(
                seconds=offset), jitter=p.interval * config.agent.jitter or None, timezone=UTC)
            self._scheduler.add_job(self._job, trigger, args=[key], id=key, name=key,
                                    max_instances=1, coalesce=True,
                                    misfire_grace_time=max(1, int(p.interval)),
                                    replace_existing=True)
        self._planned = planned

    def start(self) -> None:
        """Start firing jobs (needs a running event loop)."""
        self._scheduler.start()

    async def shutdown(self, drain_s: float = 5.0) -> None:
        """Stop scheduling; give in-flight runs ``drain_s`` to finish, then cancel them.

        The scheduler is paused (no new runs) while in-flight runs drain, and shut down only
        after: APScheduler's own shutdown cancels running jobs and logs each as an error.
        """
        running = self._scheduler.running
        if running:
            self._scheduler.pause()
            await asyncio.sleep(0)  # runs submitted just now register themselves as in flight
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=drain_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        if running:
            self._scheduler.shutdown(wait=False)

    async def _job(self, key: str) -> None:
        planned = self._planned.get(key)
        if planned is None:
            return
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self.runner.run(planned, self._due.pop(key, None))
        except asyncio.CancelledError:
            log.debug("%s cancelled at shutdown", key)  # our own cancel: nothing to report
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _on_event(self, event: JobSubmissionEvent) -> None:
        if event.code == EVENT_JOB_SUBMITTED and event.scheduled_run_times:
            self._due[event.job_id] = event.scheduled_run_times[-1].timestamp()
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            planned = self._planned.get(event.job_id)
            metrics = self.runner.metrics
            if planned is not None and metrics is not None:
                metrics.runs.labels(planned.site.name, planned.check.name, "skipped").inc()
            log.info("%s still running at its next start; run skipped", event.job_id)
