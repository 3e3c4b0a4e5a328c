"""Incident and outbox metrics: gauges read from the store at scrape time, plus counters."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.config.secrets import scrub
from agent.evidence import EVIDENCE_DIR, DiskUsageCache
from agent.metrics import catalog as c
from agent.state.database import Database, is_postgres_url, open_database
from agent.state.store import (
    dead_letters_of,
    open_counts_of,
    pending_stats_of,
    unconfirmed_counts_of,
)

log = logging.getLogger(__name__)


class IncidentCollector(Collector):
    """Open incidents and outbox backlog, read from the store (its own read connection).

    Scrapes come from the metrics server's threads: one lock guards the connection, which is
    opened on the first scrape after the store exists and closed by ``close``. A query that
    fails (store busy, broken) leaves the incident gauges out of that scrape and sets
    ``storewatch_incident_collector_success`` to 0, logged once until it works again.
    """

    def __init__(self, db: str | Path) -> None:
        self._db = db
        self._conn: Database | None = None
        self._lock = threading.Lock()
        self._failing = False

    def collect(self) -> Iterator[Metric]:
        """Fresh gauges from the store."""
        open_ = GaugeMetricFamily(c.INCIDENTS_OPEN.name, c.INCIDENTS_OPEN.help,
                                  labels=list(c.INCIDENTS_OPEN.labels))
        unconfirmed = GaugeMetricFamily(c.INCIDENTS_UNCONFIRMED.name,
                                        c.INCIDENTS_UNCONFIRMED.help,
                                        labels=list(c.INCIDENTS_UNCONFIRMED.labels))
        pending = GaugeMetricFamily(c.OUTBOX_PENDING.name, c.OUTBOX_PENDING.help)
        oldest = GaugeMetricFamily(c.OUTBOX_OLDEST_AGE.name, c.OUTBOX_OLDEST_AGE.help)
        dead = GaugeMetricFamily(c.OUTBOX_DEAD.name, c.OUTBOX_DEAD.help)
        success = GaugeMetricFamily(c.INCIDENT_COLLECTOR_SUCCESS.name,
                                    c.INCIDENT_COLLECTOR_SUCCESS.help)
        with self._lock:
            ok = self._read(open_, unconfirmed, pending, oldest, dead)
        success.add_metric([], 1.0 if ok else 0.0)
        yield from (open_, unconfirmed, pending, oldest, dead, success) if ok else (success,)

    def _read(self, open_: GaugeMetricFamily, unconfirmed: GaugeMetricFamily,
              pending: GaugeMetricFamily,
              oldest: GaugeMetricFamily, dead: GaugeMetricFamily) -> bool:
        """Fill the gauges from the store (holding the lock); False if the query failed."""
        if (self._conn is None and not is_postgres_url(self._db)
                and not Path(self._db).is_file()):  # the agent has not started yet
            return True
        try:
            if self._conn is None:
                self._conn = open_database(self._db)
            for (site, level), n in sorted(open_counts_of(self._conn).items()):
                open_.add_metric([site, level], float(n))
            for (site, level), n in sorted(unconfirmed_counts_of(self._conn).items()):
                unconfirmed.add_metric([site, level], float(n))
            count, age = pending_stats_of(self._conn, datetime.now(UTC))
            pending.add_metric([], float(count))
            oldest.add_metric([], age)
            dead.add_metric([], float(dead_letters_of(self._conn)))
        except Exception as exc:  # a scrape must not fail because the store is busy
            if type(exc).__name__ == "UndefinedTable":  # PostgreSQL: not migrated yet
                return True
            if not self._failing:
                log.warning("incident metrics unavailable: %s", scrub(" ".join(str(exc).split())))
            self._failing = True
            return False
        if self._failing:
            log.info("incident metrics available again")
        self._failing = False
        return True

    def close(self) -> None:
        """Close the read connection (a later scrape opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class EvidenceCollector(Collector):
    """Size and count of the evidence files, walked at most once a minute."""

    def __init__(self, root: Path) -> None:
        self.usage = DiskUsageCache(root)

    def describe(self) -> Iterator[Metric]:
        """The families, without walking the folder (registration calls this)."""
        yield GaugeMetricFamily(c.EVIDENCE_BYTES.name, c.EVIDENCE_BYTES.help)
        yield GaugeMetricFamily(c.EVIDENCE_FILES.name, c.EVIDENCE_FILES.help)

    def collect(self) -> Iterator[Metric]:
        """The folder's bytes and files (0 while it does not exist)."""
        try:
            files, size = self.usage.get()
        except OSError as exc:
            log.debug("evidence folder unreadable: %s", exc)
            return
        yield GaugeMetricFamily(c.EVIDENCE_BYTES.name, c.EVIDENCE_BYTES.help, value=size)
        yield GaugeMetricFamily(c.EVIDENCE_FILES.name, c.EVIDENCE_FILES.help, value=files)


class IncidentMetrics:
    """Counters of the incident engine and the outbox, on the agent's registry."""

    def __init__(self, registry: CollectorRegistry, db: str | Path,
                 state_dir: Path | None = None) -> None:
        self.collector = IncidentCollector(db)
        registry.register(self.collector)
        if state_dir is None:
            if not isinstance(db, Path):
                raise ValueError("IncidentMetrics needs the state directory with a database URL")
            state_dir = db.parent  # the evidence folder sits beside a SQLite store by default
        self.evidence = EvidenceCollector(state_dir / EVIDENCE_DIR)
        registry.register(self.evidence)
        self.pruned = Counter(c.EVIDENCE_PRUNED.name.removesuffix("_total"),
                              c.EVIDENCE_PRUNED.help, registry=registry)
        self.errors = Counter(c.INCIDENT_ERRORS.name.removesuffix("_total"), c.INCIDENT_ERRORS.help,
                              registry=registry)
        self.dropped = Counter(c.INCIDENT_QUEUE_DROPPED.name.removesuffix("_total"),
                               c.INCIDENT_QUEUE_DROPPED.help, registry=registry)
        self.queue_length = Gauge(c.INCIDENT_QUEUE_LENGTH.name, c.INCIDENT_QUEUE_LENGTH.help,
                                  registry=registry)
        self.opened = Counter(c.INCIDENTS_OPENED.name.removesuffix("_total"),
                              c.INCIDENTS_OPENED.help, list(c.INCIDENTS_OPENED.labels),
                              registry=registry)
        self.deliveries = Counter(c.TICKET_DELIVERIES.name.removesuffix("_total"),
                                  c.TICKET_DELIVERIES.help, list(c.TICKET_DELIVERIES.labels),
                                  registry=registry)
        self.claims = Counter(c.OUTBOX_CLAIMS.name.removesuffix("_total"), c.OUTBOX_CLAIMS.help,
                              list(c.OUTBOX_CLAIMS.labels), registry=registry)

    def claim(self, outcome: str) -> None:
        """Count an outbox claim by outcome (taken, taken_over, lost)."""
        self.claims.labels(outcome).inc()

    def incident_opened(self, site: str, level: str) -> None:
        """Count an incident confirmed open."""
        self.opened.labels(site, level).inc()

    def evidence_pruned(self, files: int) -> None:
        """Count files pruning deleted; the next scrape walks the folder again."""
        self.pruned.inc(files)
        self.evidence.usage.invalidate()

    def delivery(self, sink: str, action: str, outcome: str) -> None:
        """Count a delivery attempt."""
        self.deliveries.labels(sink, action, outcome).inc()

    def close(self) -> None:
        """Close the collector's read connection."""
        self.collector.close()
