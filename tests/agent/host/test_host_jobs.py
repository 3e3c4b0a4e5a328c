"""The host and mail-queue checks are scheduler jobs: the same guarded path as every probe
(concurrency limit, lateness, deadline, error boundary), so a bug in one run does not end them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import agent.host.monitor
from agent.config.schema import Config, MailQueue
from agent.demo.storefront import DemoStore
from agent.host.mailqueue import QueueState
from agent.service import Agent
from tests.agent.test_incidents_e2e import wait_for


def host_config(url: str, mail_cmd: str, state: Path) -> Config:
    return Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "state_dir": str(state)},
        "sites": [{"name": "shop", "base_url": url, "interval": "60s", "timeout": "0.8s",
                   "checks": [{"name": "home"}]}],
        "host": {"site": "shop", "interval": "1s", "reading_timeout": "0.5s",
                 "mail_queue": {"mta": "command", "command": [mail_cmd], "interval": "1s",
                                "timeout": "0.5s"}},
    })


@pytest.fixture
async def daemon(store: DemoStore, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Agent]:
    mail = tmp_path / "queue"
    mail.write_text('#!/bin/sh\necho \'{"messages": 1, "oldest_age_seconds": 5}\'\n')
    mail.chmod(0o755)
    real = agent.host.monitor.read_queue
    bugs = [ZeroDivisionError("a bug in the first mail queue run")]

    async def buggy(settings: MailQueue) -> QueueState:
        if bugs:
            raise bugs.pop()
        return await real(settings)

    monkeypatch.setattr(agent.host.monitor, "read_queue", buggy)
    running = Agent("test.yaml", host_config(store.url, str(mail), tmp_path / "state"))
    task = asyncio.create_task(running.serve())
    try:
        yield running
    finally:
        running.stop()
        await task


def runs(daemon: Agent, check: str, outcome: str) -> float:
    return daemon.metrics.registry.get_sample_value(
        "storewatch_probe_runs_total", {"site": "shop", "check": check, "outcome": outcome}) or 0


async def test_a_failing_mail_queue_run_does_not_end_the_mail_queue_checks(
        daemon: Agent) -> None:
    seen: list[Any] = []

    def mail_results() -> int:
        obs = {o.result.check: o for o in daemon.latest.snapshot()}.get("mail-queue")
        if obs is not None and (not seen or seen[-1] is not obs):
            seen.append(obs)
        return len(seen) >= 2

    await wait_for("two mail queue results after the failed run", mail_results, 30)
    assert runs(daemon, "mail-queue", "failure") == 1.0  # the bug: counted, logged, survived
    jobs = {job.id for job in daemon.scheduler._scheduler.get_jobs()}
    assert {"task:shop/host", "task:shop/mail-queue", "shop/home"} <= jobs
    await wait_for("host runs", lambda: "host" in {o.result.check
                                                   for o in daemon.latest.snapshot()}, 30)
    lateness = daemon.metrics.registry.get_sample_value(
        "storewatch_scheduler_lateness_seconds_count") or 0
    assert lateness >= 3  # host and mail runs go through the scheduler's lateness path
