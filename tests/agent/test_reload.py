"""SIGHUP reload is all or nothing: everything the new config needs is built before anything
running changes; a sink that fails to build keeps the old config whole."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import agent.incidents.service
from agent.demo.storefront import DemoStore
from agent.errors import StateError
from agent.service import Agent, load
from tests.agent.test_incidents_e2e import wait_for


def write(path: Path, url: str, state: Path, interval: str, sinks: list[str]) -> None:
    lines = ["agent:", "  listen: 127.0.0.1:0", f"  state_dir: {state}", "  jitter: 0",
             "sinks:"]
    lines += [f"  {name}:\n    type: sqlite" for name in sinks]
    lines += ["sites:", "  - name: shop", f"    base_url: {url}", f"    interval: {interval}",
              "    timeout: 0.8s", "    checks:", "      - name: home"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
async def running(store: DemoStore, tmp_path: Path) -> AsyncIterator[tuple[Agent, Path]]:
    path = tmp_path / "config.yaml"
    write(path, store.url, tmp_path / "state", "1s", ["local"])
    daemon = Agent(path, load(path))
    task = asyncio.create_task(daemon.serve())
    try:
        await wait_for("the first run", lambda: daemon.latest.snapshot(), 20)
        yield daemon, path
    finally:
        daemon.stop()
        await task


async def test_a_sink_failing_to_build_on_reload_keeps_the_old_config_whole(
        running: tuple[Agent, Path], store: DemoStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    daemon, path = running
    before = (daemon.config, daemon.incidents.config, daemon.runner.classifier,
              daemon.incidents.outbox.sinks["local"], daemon.scheduler._planned)
    real = agent.incidents.service.build_sink

    def failing(config: Any, context: Any) -> Any:
        if context.name == "tracker":
            raise StateError("tracker: cannot open its state")
        return real(config, context)

    monkeypatch.setattr(agent.incidents.service, "build_sink", failing)
    write(path, store.url, tmp_path / "state", "2s", ["local", "tracker"])
    with caplog.at_level(logging.ERROR, logger="agent.service"):
        assert daemon.reload() is False
    after = (daemon.config, daemon.incidents.config, daemon.runner.classifier,
             daemon.incidents.outbox.sinks["local"], daemon.scheduler._planned)
    assert all(a is b for a, b in zip(after, before, strict=True))  # the very same objects
    assert set(daemon.incidents.outbox.sinks) == {"local"}
    assert [r.getMessage() for r in caplog.records if r.name == "agent.service"] == [
        "reload failed, keeping the running config: tracker: cannot open its state"]
    assert daemon.metrics.registry.get_sample_value(
        "storewatch_config_last_reload_successful") == 0.0
    assert daemon.scheduler._scheduler.get_job("shop/home").trigger.interval.total_seconds() == 1

    monkeypatch.setattr(agent.incidents.service, "build_sink", real)  # the cause is fixed
    assert daemon.reload() is True
    assert set(daemon.incidents.outbox.sinks) == {"local", "tracker"}
    assert daemon.scheduler._scheduler.get_job("shop/home").trigger.interval.total_seconds() == 2
    assert daemon.metrics.registry.get_sample_value(
        "storewatch_config_last_reload_successful") == 1.0


async def test_reload_keeps_who_the_agent_is(
        running: tuple[Agent, Path], store: DemoStore, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A reload cannot rename the agent: its clients, metrics and observations would disagree."""
    daemon, path = running
    name = daemon.config.agent.name
    write(path, store.url, tmp_path / "state", "1s", ["local"])
    path.write_text(path.read_text().replace("agent:\n", "agent:\n  name: renamed\n"
                                             "  location: nyc\n"))
    with caplog.at_level(logging.WARNING, logger="agent.service"):
        assert daemon.reload() is True
    assert "agent.name/location changed; restart the agent" in caplog.text
    assert (daemon.config.agent.name, daemon.config.agent.location) == (name, None)
    assert daemon.clients.agent == name
    daemon.latest.retain([])
    await wait_for("a run after the reload", lambda: daemon.latest.snapshot(), 20)
    assert {o.agent for o in daemon.latest.snapshot()} == {name}
