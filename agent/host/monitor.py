"""The ``host:`` section at work: scheduled host checks, the scrape-time collector, heartbeat.

Every ``interval`` the monitor takes a host snapshot and turns it into ordinary ProbeResults:
check ``host`` (``resource_pressure``) and one ``service-NAME`` check per service group
(``service_down``), filed under ``host.site``. The mail queue check (``mail-queue``,
``email_not_sent``) runs on its own interval. Both are scheduler jobs (``jobs()``: jitter,
concurrency limit, lateness, a deadline and an error boundary, agent/scheduler.py); results go
through ``record`` (the scheduler's classify → latest → metrics path), exactly like a storefront
probe's. Only the outbound heartbeat keeps a loop of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.config.schema import HostSettings, MailQueue
from agent.host.assess import (
    RESOURCES_CHECK,
    assess_resources,
    assess_service,
    service_check_name,
)
from agent.host.collector import HostCollector
from agent.host.heartbeat import HeartbeatSender
from agent.host.mailqueue import MAIL_CHECK, MailQueueError, QueueState, assess_queue, read_queue
from agent.host.snapshot import HostSnapshot, ReadingStatus
from agent.httpclient import HttpClients
from agent.metrics import catalog as c
from agent.probes.base import ProbeResult
from agent.scheduler import TaskJob

if TYPE_CHECKING:  # the reader (and psutil) is imported when a host: section is applied
    from agent.host.readings import HostReader

log = logging.getLogger(__name__)

Record = Callable[[ProbeResult], object]

MAIL_GRACE_SECONDS = 2.0
"""Beyond the mail queue command's own timeout, before the scheduler cancels the check."""


class HostMonitor:
    """Runs the host checks of the current config and exposes the host metrics."""

    def __init__(self, clients: HttpClients, record: Record,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings: HostSettings | None = None
        self.reader: HostReader | None = None
        self.heartbeat = HeartbeatSender(clients)
        self.mail: QueueState | None = None
        self.mail_error: str | None = None
        self._record = record
        self._now = now
        self._previous: HostSnapshot | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._failed_readings: set[str] = set()
        self._mail_seconds = 0.0

    def prepare(self, settings: HostSettings | None) -> HostReader | None:
        """Build the reader for ``settings`` without using it yet (raises on failure)."""
        if settings is None or settings == self.settings:
            return self.reader
        from agent.host.readings import HostReader

        return HostReader(settings.filesystems, settings.services, settings.reading_timeout)

    def apply(self, settings: HostSettings | None,
              reader: HostReader | None = None) -> None:
        """Use ``settings`` from now on (with the reader ``prepare`` built for them); the
        scheduler picks up ``jobs()`` when the agent re-applies its schedule."""
        if settings == self.settings:
            return
        self.reader = reader if reader is not None else self.prepare(settings)
        self.settings = settings
        self._previous = None
        if settings is None or settings.mail_queue is None:
            self.mail, self.mail_error = None, None
        if self._running:
            self._cancel()
            self._spawn()

    def jobs(self, settings: HostSettings | Literal["current"] | None = "current"
             ) -> list[TaskJob]:
        """The host and mail-queue checks as scheduler jobs, of the current settings or of
        ``settings`` about to be applied (each run reads the settings in use when it fires)."""
        s = self.settings if settings == "current" else settings
        if s is None:
            return []
        jobs = [TaskJob(s.site, RESOURCES_CHECK, s.interval, s.interval, self._run_host)]
        if s.mail_queue is not None:
            jobs.append(TaskJob(s.site, MAIL_CHECK, s.mail_queue.interval,
                                s.mail_queue.timeout + MAIL_GRACE_SECONDS, self._run_mail))
        return jobs

    async def _run_host(self) -> None:
        if self.settings is not None:
            await self.check_host(self.settings)

    async def _run_mail(self) -> None:
        s = self.settings
        if s is not None and s.mail_queue is not None:
            await self.check_mail(s.site, s.mail_queue)

    def result_keys(self) -> list[tuple[str, str]]:
        """``(site, check)`` of every result the current config produces."""
        s = self.settings
        if s is None:
            return []
        keys = [(s.site, RESOURCES_CHECK)]
        keys += [(s.site, service_check_name(g.name)) for g in s.services]
        if s.mail_queue is not None:
            keys.append((s.site, MAIL_CHECK))
        return keys

    def collector(self) -> HostCollector:
        """The scrape-time collector (renders nothing while there is no ``host:``)."""
        return HostCollector(lambda: self.reader,
                             lambda: self.settings.site if self.settings else None,
                             self._state_metrics, self._extra_statuses,
                             lambda: self.settings is None or self.settings.node_metrics)

    def start(self) -> None:
        """Start the heartbeat loop (needs a running event loop)."""
        self._running = True
        self._spawn()

    async def stop(self) -> None:
        """Cancel the heartbeat loop and wait for it."""
        self._running = False
        tasks = self._cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    def _spawn(self) -> None:
        s = self.settings
        if s is not None and s.heartbeat is not None:
            self._tasks.append(asyncio.create_task(self.heartbeat.loop(s.heartbeat),
                                                   name="heartbeat"))

    def _cancel(self) -> list[asyncio.Task[None]]:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        return tasks

    async def check_host(self, settings: HostSettings) -> list[ProbeResult]:
        """One run of the resource and service checks; returns the results it recorded."""
        reader = self.reader
        if reader is None:
            return []
        started_at = self._now()
        start = time.perf_counter()
        snap = await asyncio.to_thread(reader.snapshot)
        elapsed = time.perf_counter() - start
        self._log_failed_readings(snap)
        findings = assess_resources(snap, self._previous, settings.thresholds, settings.site,
                                    started_at)
        self._previous = snap
        results = [ProbeResult(site=settings.site, check=RESOURCES_CHECK, success=not findings,
                               duration_s=elapsed, started_at=started_at,
                               measurements={"readings_failed": float(len(snap.failed()))},
                               findings=tuple(findings))]
        for svc in snap.services or ():  # no results when the process table could not be read
            found = assess_service(svc, settings.site, started_at)
            results.append(ProbeResult(site=settings.site, check=service_check_name(svc.name),
                                       success=not found, duration_s=elapsed,
                                       started_at=started_at,
                                       measurements={"processes": float(svc.processes)},
                                       findings=tuple(found)))
        for result in results:
            self._record(result)
        return results

    async def check_mail(self, site: str, settings: MailQueue) -> ProbeResult:
        """One run of the mail queue check; a queue that cannot be read is logged, not a
        finding (the server may have no MTA), and shows as a failed collector."""
        started_at = self._now()
        start = time.perf_counter()
        try:
            state = await read_queue(settings)
        except MailQueueError as exc:
            if self.mail_error != str(exc):
                log.warning("mail queue of %s not readable: %s", site, exc)
            self.mail, self.mail_error = None, str(exc)
            result = ProbeResult(site=site, check=MAIL_CHECK, success=False,
                                 duration_s=time.perf_counter() - start, started_at=started_at)
        else:
            self.mail, self.mail_error = state, None
            found = assess_queue(state, settings, site, started_at)
            measurements = {"mail_queue_messages": float(state.messages)}
            if state.oldest_age_s is not None:
                measurements["mail_queue_oldest_age_seconds"] = state.oldest_age_s
            result = ProbeResult(site=site, check=MAIL_CHECK, success=not found,
                                 duration_s=time.perf_counter() - start, started_at=started_at,
                                 measurements=measurements, findings=tuple(found))
        self._mail_seconds = result.duration_s
        self._record(result)
        return result

    def _log_failed_readings(self, snap: HostSnapshot) -> None:
        failed = {s.name: s.error for s in snap.failed()}
        for name in sorted(set(failed) - self._failed_readings):
            log.warning("host reading %s failed: %s", name, failed[name])
        self._failed_readings = set(failed)

    def _extra_statuses(self) -> list[ReadingStatus]:
        s = self.settings
        if s is None or s.mail_queue is None or (self.mail is None and self.mail_error is None):
            return []  # not run yet
        return [ReadingStatus("mail_queue", self.mail_error is None, self._mail_seconds,
                              self.mail_error)]

    def _state_metrics(self) -> Iterator[Metric]:
        s = self.settings
        if s is not None and s.mail_queue is not None and self.mail is not None:
            messages = GaugeMetricFamily(c.MAIL_QUEUE_MESSAGES.name,
                                         c.MAIL_QUEUE_MESSAGES.help)
            messages.add_metric([], float(self.mail.messages))
            yield messages
            if self.mail.oldest_age_s is not None:
                oldest = GaugeMetricFamily(c.MAIL_QUEUE_OLDEST.name, c.MAIL_QUEUE_OLDEST.help)
                oldest.add_metric([], self.mail.oldest_age_s)
                yield oldest
        if self.heartbeat.last_success is not None and s is not None and s.heartbeat is not None:
            beat = GaugeMetricFamily(c.HEARTBEAT_LAST_SUCCESS.name, c.HEARTBEAT_LAST_SUCCESS.help)
            beat.add_metric([], self.heartbeat.last_success)
            yield beat
