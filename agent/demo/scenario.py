"""`storewatch demo`: the demo store, an agent watching it, and a cycle of faults.

Prints each fault as it is switched on and off, and each finding with its support level as it
appears and clears, so a newcomer sees classification at work within a minute.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from agent.demo.storefront import DemoStore, start_store
from agent.errors import StorewatchError
from agent.pipeline import Observation
from agent.report import ChangeTracker


@dataclass(frozen=True, slots=True)
class Phase:
    """Faults to hold for a while."""

    faults: tuple[str, ...]
    seconds: float


SCHEDULE: tuple[Phase, ...] = (
    Phase((), 12),
    Phase(("down",), 20),          # L1 site_down; the other checks' failures are suppressed
    Phase((), 15),
    Phase(("checkout",), 35),      # L1 checkout_broken: one incident for both checkout checks
    Phase((), 30),
    Phase(("catalog",), 45),       # L2 catalog_missing (3 runs of a 10 s check to confirm)
    Phase((), 30),
    Phase(("search",), 25),        # L3 search_broken
    Phase((), 15),
    Phase(("skimmer",), 20),       # L1 security_breach
    Phase((), 15),
)
"""Each fault phase lasts at least (confirmations + 1) x its check's interval, so its incident
is confirmed (tests/agent/test_demo_schedule.py); healthy phases let it recover."""

FAULT_CHECKS: dict[str, str] = {
    "down": "home", "checkout": "checkout", "catalog": "catalog", "search": "search",
    "skimmer": "scripts",
}
"""The demo config's check that turns each scheduled fault into an incident."""


def bundled_config() -> Path:
    """Path of the demo config shipped inside the package."""
    return Path(str(files("agent.demo").joinpath("demo.yaml")))


def run_demo(*, duration: float | None, store_port: int, listen: str,
             config_path: str | None = None, schedule: Sequence[Phase] = SCHEDULE) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; returns the exit status."""
    try:
        return asyncio.run(_demo(duration, store_port, listen, config_path, schedule))
    except KeyboardInterrupt:
        print("\ndemo stopped", flush=True)
        return 0


def _say(start: float, text: str) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {text}", flush=True)


async def _demo(duration: float | None, store_port: int, listen: str, config_path: str | None,
                schedule: Sequence[Phase]) -> int:
    from agent import service

    start = time.monotonic()
    try:
        store = await start_store("127.0.0.1", store_port)
    except OSError as exc:
        raise StorewatchError(f"cannot start the demo store on port {store_port}: "
                              f"{exc.strerror or exc} (try --store-port 0)") from None
    os.environ["STOREWATCH_DEMO_URL"] = store.url
    path = config_path or str(bundled_config())
    config = service.load(path, service.Overrides(listen=listen))
    tracker = ChangeTracker()

    def show(obs: Observation) -> None:
        for change in tracker.update(obs):
            _say(start, change.line())

    agent = service.Agent(path, config, service.Overrides(listen=listen), on_observation=show,
                          log_changes=False)
    _say(start, f"demo store at {store.url}  (faults: POST {store.url}/_demo/faults)")
    _say(start, f"agent metrics at {agent.metrics_url}; Ctrl-C to stop")
    runner = asyncio.create_task(agent.serve(duration))
    try:
        await _cycle(store, schedule, start, runner)
    finally:
        agent.stop()
        await runner
        await store.close()
    _say(start, "demo finished")
    return 0


async def _cycle(store: DemoStore, schedule: Sequence[Phase], start: float,
                 runner: asyncio.Task[None]) -> None:
    while not runner.done():
        for phase in schedule:
            store.set_faults(phase.faults)
            _say(start, f"fault on: {', '.join(phase.faults)}" if phase.faults
                 else "store healthy (no faults)")
            done, _ = await asyncio.wait({runner}, timeout=phase.seconds)
            if done:
                return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(duration=None, store_port=8765, listen="127.0.0.1:9478"))
