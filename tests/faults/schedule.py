"""Run the real scheduler for a while and record, per check, how late each run started."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from agent.config.schema import Config, PlannedCheck
from agent.httpclient import HttpClients
from agent.metrics.collectors import AgentMetrics
from agent.pipeline import Classifier, LatestResults, Observation
from agent.scheduler import CheckRunner, CheckScheduler


class LatenessRecorder(CheckRunner):
    """A CheckRunner that also keeps each run's lateness by check key."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lateness: dict[str, list[float]] = defaultdict(list)

    async def run(self, planned: PlannedCheck, scheduled_at: float | None = None) -> Observation:
        if scheduled_at is not None:
            self.lateness[planned.key].append(max(0.0, time.time() - scheduled_at))
        return await super().run(planned, scheduled_at)


@dataclass
class ScheduleRun:
    """What happened while the scheduler ran."""

    lateness: dict[str, list[float]]
    observations: dict[str, list[Observation]] = field(default_factory=dict)

    def worst_lateness(self, site_prefix: str) -> float:
        """Worst lateness of any run of the sites whose name starts with ``site_prefix``."""
        values = [v for key, runs in self.lateness.items() if key.startswith(site_prefix)
                  for v in runs]
        return max(values, default=0.0)


async def run_schedule(config: Config, seconds: float) -> ScheduleRun:
    """Schedule every check of ``config`` for ``seconds``, then drain and stop."""
    clients = HttpClients("storewatch-faults")
    latest = LatestResults()
    observations: dict[str, list[Observation]] = defaultdict(list)

    def observed(obs: Observation) -> None:
        observations[f"{obs.result.site}/{obs.result.check}"].append(obs)

    runner = LatenessRecorder(clients, Classifier(config), latest, AgentMetrics(latest),
                              config.agent.concurrency, observed)
    scheduler = CheckScheduler(runner)
    scheduler.apply(config)
    scheduler.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await scheduler.shutdown(drain_s=2.0)
        await clients.aclose()
    return ScheduleRun(dict(runner.lateness), dict(observations))
