"""Metric state of the agent: a custom collector over the latest results, plus counters.

Gauges about "the last run" are rendered fresh from ``LatestResults`` on each scrape, so a check
removed by a reload leaves no stale series. Counters and the lateness histogram are ordinary
prometheus-client objects on the same private registry.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.config.schema import AgentSettings, Config
from agent.host.assess import RESOURCES_CHECK, service_check_name
from agent.host.mailqueue import MAIL_CHECK
from agent.metrics import catalog as c
from agent.pipeline import LatestResults, Observation
from classifier import FindingKind, Level

WORKING_CHECK_KINDS = frozenset({FindingKind.SLOW_RESPONSE, FindingKind.TLS_EXPIRING,
                                 FindingKind.RESOURCE_PRESSURE})
"""Findings about a check that did its job (it answered, only slowly; the certificate is still
valid; the server is busy): they keep ``storewatch_probe_success`` at 1. Every other kind means
the check itself failed (transport, status or an assertion), as in blackbox_exporter."""


def check_passed(obs: Observation) -> bool:
    """``storewatch_probe_success``: the run passed, whatever its quality findings say."""
    r = obs.result
    if not r.findings:
        return r.success
    return all(f.kind in WORKING_CHECK_KINDS for f in r.findings)


def worst_level(obs: Observation) -> int:
    """``storewatch_probe_worst_level``: 1 (L1) … 4 (L4) of the most urgent classified finding,
    0 when there is none (suppressed findings have no level and do not count)."""
    levels = [int(i.decision.level) for i in obs.classified if i.decision.level is not None]
    return min(levels, default=0)


def check_intervals(config: Config) -> dict[tuple[str, str], float]:
    """The configured interval of every ``(site, check)`` that produces results, host too."""
    out = {(p.site.name, p.check.name): float(p.interval) for p in config.planned_checks()}
    host = config.host
    if host is not None:
        out[(host.site, RESOURCES_CHECK)] = float(host.interval)
        for group in host.services:
            out[(host.site, service_check_name(group.name))] = float(host.interval)
        if host.mail_queue is not None:
            out[(host.site, MAIL_CHECK)] = float(host.mail_queue.interval)
    return out

# `_created` series double the series count for no dashboard use (perf-anchors.md, section 3).
disable_created_metrics()  # type: ignore[no-untyped-call]


def _gauge(metric: c.MetricDef) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))


class ProbeCollector(Collector):
    """Renders the latest observation of every check at scrape time."""

    def __init__(self, latest: Callable[[], list[Observation]],
                 intervals: Callable[[], Mapping[tuple[str, str], float]] = dict) -> None:
        self._latest = latest
        self._intervals = intervals

    def collect(self) -> Iterator[Metric]:
        """Fresh metric families from the latest observations."""
        success, duration, steps = _gauge(c.PROBE_SUCCESS), _gauge(c.PROBE_DURATION), _gauge(
            c.PROBE_STEP_DURATION)
        status, last_run, tls = _gauge(c.PROBE_HTTP_STATUS), _gauge(c.PROBE_LAST_RUN), _gauge(
            c.TLS_EXPIRY)
        findings, worst, interval = _gauge(c.PROBE_FINDINGS), _gauge(c.PROBE_WORST_LEVEL), _gauge(
            c.PROBE_INTERVAL)
        for (site, check), seconds in sorted(self._intervals().items()):
            interval.add_metric([site, check], seconds)
        for obs in self._latest():
            r = obs.result
            labels = [r.site, r.check]
            success.add_metric(labels, 1.0 if check_passed(obs) else 0.0)
            worst.add_metric(labels, float(worst_level(obs)))
            duration.add_metric(labels, r.duration_s)
            last_run.add_metric(labels, r.started_at.timestamp())
            for step in r.steps:
                steps.add_metric([*labels, step.name], step.seconds)
            if "http_status" in r.measurements:
                status.add_metric(labels, r.measurements["http_status"])
            if "tls_cert_expiry_timestamp_seconds" in r.measurements:
                tls.add_metric(labels, r.measurements["tls_cert_expiry_timestamp_seconds"])
            by_level = dict.fromkeys(Level, 0)
            for item in obs.classified:
                if item.decision.level is not None:
                    by_level[item.decision.level] += 1
            for level, count in by_level.items():
                findings.add_metric([*labels, str(level)], float(count))
        yield from (success, worst, interval, duration, steps, status, last_run, tls, findings)


class AgentMetrics:
    """The agent's private registry and the instruments the scheduler and pipeline update."""

    def __init__(self, latest: LatestResults, agent: AgentSettings | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.intervals: dict[tuple[str, str], float] = {}
        self.registry.register(ProbeCollector(latest.snapshot, lambda: self.intervals))
        r = self.registry
        self.runs = Counter(c.PROBE_RUNS.name.removesuffix("_total"), c.PROBE_RUNS.help,
                            list(c.PROBE_RUNS.labels), registry=r)
        self.findings = Counter(c.FINDINGS_TOTAL.name.removesuffix("_total"),
                                c.FINDINGS_TOTAL.help, list(c.FINDINGS_TOTAL.labels),
                                registry=r)
        self.lateness = Histogram(c.SCHEDULER_LATENESS.name, c.SCHEDULER_LATENESS.help,
                                  buckets=c.LATENESS_BUCKETS, registry=r)
        self.checks_configured = Gauge(c.CHECKS_CONFIGURED.name, c.CHECKS_CONFIGURED.help,
                                       registry=r)
        self.reload_ok = Gauge(c.CONFIG_RELOAD_OK.name, c.CONFIG_RELOAD_OK.help, registry=r)
        self.reload_ts = Gauge(c.CONFIG_RELOAD_TS.name, c.CONFIG_RELOAD_TS.help, registry=r)
        build = Info(c.BUILD_INFO.name, c.BUILD_INFO.help, registry=r)
        build.info({"version": __version__, "python_version": platform.python_version()})
        if agent is not None:  # fixed for the process: a reload keeps the identity
            info = Info(c.AGENT_INFO.name, c.AGENT_INFO.help, registry=r)
            info.info({"agent": agent.name, "location": agent.location or "",
                       "version": __version__})

    def observed(self, obs: Observation, outcome: str) -> None:
        """Count a finished run and its findings."""
        r = obs.result
        self.runs.labels(r.site, r.check, outcome).inc()
        for item in obs.classified:
            level = str(item.decision.level) if item.decision.level is not None else "none"
            self.findings.labels(r.site, item.finding.kind.value, level).inc()

    def config_loaded(self, ok: bool, config: Config | None = None) -> None:
        """Record a (re)load attempt of the config (``config``: the one now running)."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_ts.set(time.time())
            if config is not None:
                self.checks_configured.set(len(config.planned_checks()))
                self.intervals = check_intervals(config)
