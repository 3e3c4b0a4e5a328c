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
* Jobs that are not storefront probes (the host and mail-queue checks, ``TaskJob``) run through
  the same path: jitter, ``max_instances=1``, the semaphore, lateness, a deadline and an error
  boundary.
* Placement (agent/fleet/placement.py): before a check runs, the ``gate`` says whether this
  agent runs it (``placement: one`` checks run on the agent holding their lease); a check the
  gate holds back is not run, and its last result here is dropped (another agent runs it).
* Liveness: when no job has fired for 3 x the shortest interval (``stalled``), checks have
  stopped although the process looks alive; the agent then stops pinging the systemd watchdog,
  ``/healthz`` answers 503 and ``storewatch_scheduler_stalled`` is 1.

The stock ``AsyncIOScheduler`` is used as is (no private API): its timer wakes it through
``call_soon_threadsafe``, one loop turn more per fired job than a timer that processes the jobs
in place, which is not worth depending on APScheduler's internals.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.config.schema import Config, PlannedCheck
from agent.httpclient import HttpClients
from agent.metrics import catalog as c
from agent.metrics.collectors import AgentMetrics
from agent.pipeline import Classifier, LatestResults, Observation
from agent.politeness import first_run_offset
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from agent.state.baselines import BaselineStore

log = logging.getLogger(__name__)

ObservationHandler = Callable[[Observation], None]
PlacementGate = Callable[[PlannedCheck], Awaitable[bool]]
"""Whether this agent runs a check now (``FleetPlacement.may_run``)."""

STALL_INTERVALS = 3.0
"""No job fired for this many times the shortest interval: the scheduler has stalled."""

TASK_PREFIX = "task:"


@dataclass(frozen=True, slots=True)
class TaskJob:
    """A scheduled check that is not a storefront probe (host resources, mail queue): ``run``
    records its own results; ``site``/``check`` name it in metrics and logs."""

    site: str
    check: str
    interval: float
    deadline: float
    run: Callable[[], Awaitable[object]] = field(compare=False)

    @property
    def key(self) -> str:
        """The scheduler job id."""
        return f"{TASK_PREFIX}{self.site}/{self.check}"


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

    async def run_task(self, task: TaskJob, scheduled_at: float | None = None) -> None:
        """Run ``task`` now within the concurrency limit and its deadline; a failure or an
        overrun is logged and counted, never raised."""
        async with self._slots:
            if scheduled_at is not None and self.metrics is not None:
                self.metrics.lateness.observe(max(0.0, time.time() - scheduled_at))
            outcome = None
            try:
                async with asyncio.timeout(task.deadline):
                    await task.run()
            except TimeoutError:
                outcome = "deadline"
                log.warning("%s/%s did not finish within %.1fs; cancelled", task.site, task.check,
                            task.deadline)
            except Exception:
                outcome = "failure"
                log.exception("%s/%s failed", task.site, task.check)
        if outcome is not None and self.metrics is not None:
            self.metrics.runs.labels(task.site, task.check, outcome).inc()

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


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """The jobs of one config, built before any of them replaces the running ones."""

    planned: dict[str, PlannedCheck]
    tasks: dict[str, TaskJob]
    triggers: dict[str, IntervalTrigger]


class CheckScheduler:
    """APScheduler wrapper: one interval job per configured check (and per ``TaskJob``)."""

    def __init__(self, runner: CheckRunner, *, spread_first_runs: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 gate: PlacementGate | None = None) -> None:
        self.runner = runner
        self.gate = gate
        self._spread = spread_first_runs
        self._clock = clock
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self._planned: dict[str, PlannedCheck] = {}
        self._tasks: dict[str, TaskJob] = {}
        self._due: dict[str, float] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._last_fired: float | None = None
        self._last_fired_wall: float | None = None
        self._stall_logged = False

    def plan(self, config: Config, tasks: Sequence[TaskJob] = ()) -> SchedulePlan:
        """Build the jobs of ``config`` (plus ``tasks``) without scheduling them; raises if one
        cannot be built, and nothing changes then."""
        planned = {p.key: p for p in config.planned_checks()}
        wanted = {t.key: t for t in tasks}
        now = datetime.now(UTC)
        triggers: dict[str, IntervalTrigger] = {}
        offsets = _spread_by_site(list(planned.values()))
        for key, p in planned.items():
            if self._planned.get(key) != p:
                offset = offsets[key] if self._spread else 0.0
                triggers[key] = _trigger(p.interval, now + timedelta(seconds=offset),
                                         config.agent.jitter)
        for key, t in wanted.items():
            if self._tasks.get(key) != t:
                triggers[key] = _trigger(t.interval, now, config.agent.jitter)
        return SchedulePlan(planned, wanted, triggers)

    def commit(self, plan: SchedulePlan) -> None:
        """Schedule exactly the jobs of ``plan``; unchanged jobs keep their timing."""
        for key in (set(self._planned) - set(plan.planned)) | (set(self._tasks) - set(plan.tasks)):
            self._scheduler.remove_job(key)
        for key, trigger in plan.triggers.items():
            options: dict[str, Any] = {}
            if key in plan.planned:
                interval = plan.planned[key].interval
            else:  # a task's first run is now (the host checks report at start-up)
                interval = plan.tasks[key].interval
                options["next_run_time"] = datetime.now(UTC)
            self._scheduler.add_job(self._job, trigger, args=[key], id=key, name=key,
                                    max_instances=1, coalesce=True,
                                    misfire_grace_time=max(1, int(interval)),
                                    replace_existing=True, **options)
        self._planned, self._tasks = plan.planned, plan.tasks

    def apply(self, config: Config, tasks: Sequence[TaskJob] = ()) -> None:
        """(Re)schedule exactly the checks of ``config`` and ``tasks``."""
        self.commit(self.plan(config, tasks))

    # -- liveness ------------------------------------------------------------------------------

    def shortest_interval(self) -> float | None:
        """The shortest interval of any scheduled job (None: nothing scheduled)."""
        intervals = [p.interval for p in self._planned.values()]
        intervals += [t.interval for t in self._tasks.values()]
        return min(intervals) if intervals else None

    def stalled(self) -> bool:
        """Whether no job has fired for ``STALL_INTERVALS`` x the shortest interval while the
        scheduler should be running (logged once when it starts)."""
        shortest = self.shortest_interval()
        if shortest is None or self._last_fired is None:
            return False
        silent = self._clock() - self._last_fired
        stalled = silent > STALL_INTERVALS * shortest
        if stalled and not self._stall_logged:
            log.error("checks have stopped: no check started for %.0fs (shortest interval "
                      "%gs); not pinging the systemd watchdog, /healthz answers 503", silent,
                      shortest)
        elif not stalled and self._stall_logged:
            log.warning("checks are running again")
        self._stall_logged = stalled
        return stalled

    @property
    def last_fired_at(self) -> float | None:
        """When a job last fired (Unix time; None before the start)."""
        return self._last_fired_wall

    def collector(self) -> Collector:
        """``storewatch_scheduler_stalled`` and the time of the last fired job, per scrape."""
        return _SchedulerCollector(self)

    def start(self) -> None:
        """Start firing jobs (needs a running event loop)."""
        self._scheduler.start()
        self._fired()  # the liveness clock starts now

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
        task_job = self._tasks.get(key)
        if planned is None and task_job is None:
            return
        self._fired()
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            if planned is not None:
                due = self._due.pop(key, None)
                if self.gate is not None and not await self.gate(planned):
                    self.runner.latest.forget(planned.site.name, planned.check.name)
                    return
                await self.runner.run(planned, due)
            elif task_job is not None:
                await self.runner.run_task(task_job, self._due.pop(key, None))
        except asyncio.CancelledError:
            log.debug("%s cancelled at shutdown", key)  # our own cancel: nothing to report
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _fired(self) -> None:
        self._last_fired = self._clock()
        self._last_fired_wall = time.time()

    def _on_event(self, event: JobSubmissionEvent) -> None:
        if event.code == EVENT_JOB_SUBMITTED and event.scheduled_run_times:
            self._due[event.job_id] = event.scheduled_run_times[-1].timestamp()
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self._fired()  # the scheduler is alive, the job is just slow
            planned = self._planned.get(event.job_id)
            task_job = self._tasks.get(event.job_id)
            metrics = self.runner.metrics
            if metrics is not None and planned is not None:
                metrics.runs.labels(planned.site.name, planned.check.name, "skipped").inc()
            elif metrics is not None and task_job is not None:
                metrics.runs.labels(task_job.site, task_job.check, "skipped").inc()
            log.info("%s still running at its next start; run skipped", event.job_id)


class GridTrigger(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """An interval trigger whose jitter does not drift: each run is due at its slot on the grid
    ``start + k x interval`` plus a fresh random delay. APScheduler's own IntervalTrigger adds
    the interval to the previous, already delayed fire time, so the delays add up and a check
    runs every interval x (1 + jitter / 2) on average (5 % fewer runs with the default 0.1)."""

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        if previous_fire_time is None:
            first: datetime | None = super().get_next_fire_time(None, now)
            return first
        start, previous = self.start_date.timestamp(), previous_fire_time.timestamp()
        # the slot the previous run belonged to (1 ms of slack: datetimes round to 1 µs, so an
        # unjittered run at start + k x interval may read as a hair before its slot)
        slot = math.floor((previous - start + 0.001) / self.interval_length) + 1
        due = start + slot * self.interval_length
        while due <= previous:  # never the same or an earlier time again
            due += self.interval_length
        if self.jitter:
            due += random.uniform(0, self.jitter)
        if self.end_date and due > self.end_date.timestamp():
            return None
        return datetime.fromtimestamp(due, tz=self.timezone)


def _trigger(interval: float, start: datetime, jitter: float) -> IntervalTrigger:
    return GridTrigger(seconds=interval, start_date=start, jitter=interval * jitter or None,
                       timezone=UTC)


class _SchedulerCollector(Collector):
    """Renders the scheduler's liveness at scrape time."""

    def __init__(self, scheduler: CheckScheduler) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        """Fresh gauges each scrape."""
        stalled = GaugeMetricFamily(c.SCHEDULER_STALLED.name, c.SCHEDULER_STALLED.help)
        stalled.add_metric([], 1.0 if self._scheduler.stalled() else 0.0)
        yield stalled
        wall = self._scheduler.last_fired_at
        if wall is not None:
            last = GaugeMetricFamily(c.SCHEDULER_LAST_FIRED.name, c.SCHEDULER_LAST_FIRED.help)
            last.add_metric([], wall)
            yield last
