"""The /metrics incident collector: scrapes from many server threads share one locked
connection, ``close`` closes it, and a broken query shows as a failed collector."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agent.metrics.incidents import IncidentMetrics
from agent.state.store import Store, db_path


def value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_a_broken_query_is_a_failed_collector_then_recovers(tmp_path: Path) -> None:
    db = db_path(tmp_path)
    conn = sqlite3.connect(db)  # a database file without the agent's tables: queries fail
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    registry = CollectorRegistry()
    metrics = IncidentMetrics(registry, db)
    assert value(registry, "storewatch_incident_collector_success") == 0.0
    assert value(registry, "storewatch_outbox_pending") is None  # no made-up zero
    Store(db).close()  # the agent creates its schema: the next scrape works
    assert value(registry, "storewatch_incident_collector_success") == 1.0
    assert value(registry, "storewatch_outbox_pending") == 0.0
    metrics.close()
    assert metrics.collector._conn is None


def test_concurrent_scrapes_share_one_connection(tmp_path: Path) -> None:
    db = db_path(tmp_path)
    Store(db).close()
    registry = CollectorRegistry()
    metrics = IncidentMetrics(registry, db)
    errors: list[BaseException] = []
    connections: set[int] = set()

    def scrape() -> None:
        try:
            for _ in range(20):
                text = generate_latest(registry).decode()
                assert "storewatch_incident_collector_success 1.0" in text
                connections.add(id(metrics.collector._conn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(connections) == 1
    metrics.close()
