"""Issue 15 (d): three real agent processes on one shared store and the demo store; a
``placement: one`` check runs on exactly one of them each interval and, after SIGKILL of that
agent, keeps running on schedule from another (lateness at most interval + lease).

Who ran what is read from the demo store's side: its access log records every request with the
User-Agent, and each agent has its own (``agent.user_agent``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.demo.storefront import DemoStore
from agent.fleet.placement import ALIVE_HEARTBEATS, HEARTBEAT_SECONDS, lease_seconds
from tests.conftest import ROOT
from tests.fleet.conftest import SharedState

pytestmark = pytest.mark.slow

INTERVAL = 2.0
LEASE = lease_seconds(INTERVAL, 0.0)
SLACK = 4.0
"""Start-up and scheduling delay of a loaded machine on top of the promised bound."""
ONE_PATH = "/category/tops"   # only the placement: one check asks for this page
EVERY_PATH = "/"              # the placement: every check
AGENTS = (("a1", "fra"), ("a2", "nyc"), ("a3", "sgp"))


@dataclass(frozen=True)
class Hit:
    at: float        # time.monotonic() of this test process when the store logged it
    path: str
    agent: str | None


class AccessLog(logging.Handler):
    """The demo store's aiohttp access log as a list of hits (agent from the User-Agent)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.hits: list[Hit] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = getattr(record, "first_request_line", "")
        ua = getattr(record, "request_header", {}).get("User-Agent", "")
        parts = line.split(" ")
        match = re.search(r"fleet-test/(\w+)", ua)
        if len(parts) >= 2:
            self.hits.append(Hit(time.monotonic(), parts[1], match.group(1) if match else None))

    def runs(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    logger = logging.getLogger("aiohttp.access")
    handler = AccessLog()
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def agent_config(tmp_path: Path, state: SharedState, store_url: str, name: str,
                 location: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        agent:
          name: {name}
          location: {location}
          listen: 127.0.0.1:0
          jitter: 0
          user_agent: "storewatch fleet-test/{name}"
        """) + state.agent_yaml() + textwrap.dedent(f"""\
        defaults:
          interval: {INTERVAL}s
          timeout: 1.5s
        sites:
          - name: demo
            base_url: {store_url}
            checks:
              - name: tops
                path: {ONE_PATH}
                placement: one
              - name: home
                path: {EVERY_PATH}
        """))
    return path


class AgentProcess:
    """`python -m agent run -c CONFIG` as a real subprocess with its own log file."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name, self.config, self.log = name, config, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "-c", str(self.config), cwd=ROOT,
                stdout=out, stderr=out)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics_url(self) -> str | None:
        match = re.search(r"metrics at (http://\S+/metrics)", self.text())
        return match.group(1) if match else None

    async def stop(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def placement_fleet(tmp_path: Path, state: SharedState,
                          store: DemoStore) -> AsyncIterator[dict[str, AgentProcess]]:
    """Agents a1, a2, a3 on the shared store, each with its own User-Agent."""
    agents = {name: AgentProcess(name, agent_config(tmp_path, state, store.url, name,
                                                    location),
                                 tmp_path / f"{name}.log")
              for name, location in AGENTS}
    try:
        for a in agents.values():
            await a.start()
        yield agents
    finally:
        for a in agents.values():
            await a.stop(signal.SIGTERM)


async def wait_logged(what: str, condition: Callable[[], object], timeout: float,
                      agents: dict[str, AgentProcess]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    logs = "\n".join(f"--- {a.name}\n{a.text()[-3000:]}" for a in agents.values())
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.parametrize("state", ["postgresql"], indirect=True)
async def test_placement_one_runs_on_one_agent_and_fails_over_after_sigkill(
        placement_fleet: dict[str, AgentProcess], access_log: AccessLog) -> None:
    fleet = placement_fleet
    # every agent runs the placement: every check: all three are up and probing
    await wait_logged("all three agents probing", lambda: {
        h.agent for h in access_log.runs(EVERY_PATH)} == {"a1", "a2", "a3"}, 90, fleet)

    # steady state: the placement: one check runs on one agent, once per interval
    start = time.monotonic()
    await wait_logged("5 runs of the placement: one check",
                   lambda: len([h for h in access_log.runs(ONE_PATH) if h.at >= start]) >= 5,
                   60, fleet)
    steady = [h for h in access_log.runs(ONE_PATH) if h.at >= start]
    span = steady[-1].at - steady[0].at
    every_runs = [h for h in access_log.runs(EVERY_PATH) if steady[0].at <= h.at <= steady[-1].at]
    print(f"\nsteady: {len(steady)} runs of the one-check in {span:.1f}s by "
          f"{sorted({h.agent or '?' for h in steady})}; {len(every_runs)} runs of the "
          "every-check meanwhile")
    # three agents each running it would give ~3 runs per interval; one gives ~1
    assert len(steady) - 1 <= span / INTERVAL + 1, steady
    assert len(every_runs) >= 2 * (len(steady) - 1), "every-check should run ~3x as often"
    holder = steady[-1].agent
    assert holder in fleet
    assert {h.agent for h in steady[-3:]} == {holder}, steady  # one agent holds it

    # SIGKILL the holder right after one of its runs
    runs_before = len(access_log.runs(ONE_PATH))
    await wait_logged("the holder's next run", lambda: len(access_log.runs(ONE_PATH)) > runs_before,
                   30, fleet)
    await fleet[holder].stop(signal.SIGKILL)
    killed_at = time.monotonic()
    last = [h for h in access_log.runs(ONE_PATH) if h.at <= killed_at][-1]
    assert last.agent == holder

    # another agent takes over within one interval plus the lease, then runs it on schedule
    await wait_logged("another agent runs the placement: one check", lambda: any(
        h.agent not in (None, holder) for h in access_log.runs(ONE_PATH) if h.at > killed_at),
        60, fleet)
    first = next(h for h in access_log.runs(ONE_PATH) if h.at > killed_at)
    gap = first.at - last.at
    lateness = gap - INTERVAL
    print(f"failover: {holder} killed; {first.agent} ran it {gap:.2f}s after the last run "
          f"(lateness {lateness:.2f}s; bound interval + lease = {INTERVAL + LEASE:.1f}s)")
    assert first.agent != holder
    assert lateness <= INTERVAL + LEASE + SLACK, (gap, access_log.runs(ONE_PATH)[-10:])

    successor = first.agent
    assert successor is not None
    taken = rf"demo/tops \(placement: one\) runs on this agent \({successor}\) now: taken over " \
            rf"from {holder}"
    assert re.search(taken, fleet[successor].text()), fleet[successor].text()[-3000:]
    after = time.monotonic()
    await wait_logged("4 more runs after the failover",
                   lambda: len([h for h in access_log.runs(ONE_PATH) if h.at > after]) >= 4,
                   60, fleet)
    resumed = [h for h in access_log.runs(ONE_PATH) if h.at > after]
    gaps = [b.at - a.at for a, b in itertools.pairwise(resumed)]
    print(f"after failover: runs by {sorted({h.agent or '?' for h in resumed})}, gaps "
          f"{', '.join(f'{g:.2f}' for g in gaps)}s")
    assert all(h.agent != holder for h in resumed)
    assert max(gaps) <= INTERVAL + LEASE + SLACK, gaps  # on schedule again
    assert len(resumed) - 1 <= (resumed[-1].at - resumed[0].at) / INTERVAL + 1, resumed

    # the survivors' metrics: who ran it, and the killed agent no longer alive
    url = fleet[successor].metrics_url()
    assert url is not None
    runs_key = ("storewatch_fleet_check_runs_total",
                (("agent", successor), ("check", "tops"), ("placement", "one"), ("site", "demo")))
    up_key = ("storewatch_fleet_agent_up", (("agent", holder), ("location", dict(AGENTS)[holder])))
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def holder_down() -> bool:
        nonlocal samples
        samples = await scrape(url)
        return samples.get(up_key) == 0.0

    deadline = time.monotonic() + ALIVE_HEARTBEATS * HEARTBEAT_SECONDS + 30
    while not await holder_down():
        assert time.monotonic() < deadline, samples
        await asyncio.sleep(0.5)
    assert samples[runs_key] >= 4
    assert samples[("storewatch_fleet_leases_held", (("agent", successor),))] == 1
    alive = {labels[0][1] for (name, labels), v in samples.items()
             if name == "storewatch_fleet_agent_up" and v == 1.0}
    assert alive == set(fleet) - {holder}

    # the agent standing by shows no (stale) result of the check it does not run
    standby = next(n for n in fleet if n not in (holder, successor))
    standby_url = fleet[standby].metrics_url()
    assert standby_url is not None
    others = await scrape(standby_url)
    assert ("storewatch_probe_success", (("check", "home"), ("site", "demo"))) in others
    assert ("storewatch_probe_success", (("check", "tops"), ("site", "demo"))) not in others
    assert others[("storewatch_fleet_leases_held", (("agent", standby),))] == 0
