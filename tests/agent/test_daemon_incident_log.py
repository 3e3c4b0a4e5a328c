"""The daemon's log tells an on-call engineer when an incident opens and when it resolves.

Real subprocess (`storewatch run`) against the demo store; the log file is read back."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from agent.demo.storefront import DemoStore
from tests.agent.test_incidents_e2e import Daemon, daemon, query, wait_for, write_config

__all__ = ["daemon"]  # the fixture, re-used


async def test_the_daemon_logs_an_incident_opening_and_resolving(
        store: DemoStore, tmp_path: Path, daemon: Callable[[Path], Daemon]) -> None:
    agent = daemon(write_config(tmp_path, store.url))
    await agent.start()
    await wait_for("the daemon's store", (tmp_path / "state" / "storewatch.db").exists, 20)
    store.set_faults(["server_error"])
    await wait_for("an open incident", lambda: query(
        tmp_path, "SELECT 1 FROM incidents WHERE state = 'open'"), 30)
    store.set_faults([])
    await wait_for("every incident resolved", lambda: query(
        tmp_path, "SELECT 1 FROM incidents") and not query(
        tmp_path, "SELECT 1 FROM incidents WHERE state != 'resolved'"), 30)
    log = tmp_path / "daemon.log"
    await wait_for("the resolved line", lambda: "resolved after" in log.read_text(), 10)
    await agent.kill(signal.SIGTERM)
    lines = log.read_text().splitlines()
    opened = [line for line in lines if "incident #1 opened" in line]
    resolved = [line for line in lines if "incident #1 resolved" in line]
    assert len(opened) == 1, lines
    assert len(resolved) == 1, lines
    assert "INFO" in resolved[0] and "demo — home: site_down" in resolved[0], resolved
    assert lines.index(opened[0]) < lines.index(resolved[0])
