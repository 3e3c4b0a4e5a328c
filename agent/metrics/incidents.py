"""Incident and outbox metrics: gauges read from the store at scrape time, plus counters."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.metrics import catalog as c
from agent.store import connect, dead_letters_of, open_counts_of, pending_stats_of

log = logging.getLogger(__name__)


class IncidentCollector(Collector):
    """Open incidents and outbox backlog, read from the store (its own read connection)."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None

    def collect(self) -> Iterator[Metric]:
        """Fresh gauges from the store."""
        open_ = GaugeMetricFamily(c.INCIDENTS_OPEN.name, c.INCIDENTS_OPEN.help,
                                  labels=list(c.INCIDENTS_OPEN.labels))
        pending = GaugeMetricFamily(c.OUTBOX_PENDING.name, c.OUTBOX_PENDING.help)
        oldest = GaugeMetricFamily(c.OUTBOX_OLDEST_AGE.name, c.OUTBOX_OLDEST_AGE.help)
        dead = GaugeMetricFamily(c.OUTBOX_DEAD.name, c.OUTBOX_DEAD.help)
        if self._conn is None and not self._db.is_file():  # the agent has not started yet
            yield from (open_, pending, oldest)
            return
        try:
            if self._conn is None:
                self._conn = connect(self._db)
            for (site, level), n in sorted(open_counts_of(self._conn).items()):
                open_.add_metric([site, level], float(n))
            count, age = pending_stats_of(self._conn, datetime.now(UTC))
            pending.add_metric([], float(count))
            oldest.add_metric([], age)
            dead.add_metric([], float(dead_letters_of(self._conn)))
        except Exception as exc:  # a scrape must not fail because the store is busy
            log.warning("incident metrics unavailable: %s", exc)
            return
        yield from (open_, pending, oldest, dead)


class IncidentMetrics:
    """Counters of the incident engine and the outbox, on the agent's registry."""

    def __init__(self, registry: CollectorRegistry, db: Path) -> None:
        registry.register(IncidentCollector(db))
        self.opened = Counter(c.INCIDENTS_OPENED.name.removesuffix("_total"),
                              c.INCIDENTS_OPENED.help, list(c.INCIDENTS_OPENED.labels),
                              registry=registry)
        self.deliveries = Counter(c.TICKET_DELIVERIES.name.removesuffix("_total"),
                                  c.TICKET_DELIVERIES.help, list(c.TICKET_DELIVERIES.labels),
                                  registry=registry)

    def incident_opened(self, site: str, level: str) -> None:
        """Count an incident confirmed open."""
        self.opened.labels(site, level).inc()

    def delivery(self, sink: str, action: str, outcome: str) -> None:
        """Count a delivery attempt."""
        self.deliveries.labels(sink, action, outcome).inc()
