"""`storewatch demo` is honest: every fault phase lasts long enough for its incident to be
confirmed with the demo config's own intervals and confirmation counts, and every healthy phase
long enough for it to recover."""

from __future__ import annotations

from agent.config.loader import load_config
from agent.config.schema import Config
from agent.demo.scenario import FAULT_CHECKS, SCHEDULE, bundled_config
from agent.incidents.engine import policy_for
from classifier import Level

LEVELS = {"down": Level.L1, "checkout": Level.L1, "catalog": Level.L2, "search": Level.L3,
          "skimmer": Level.L1}
"""The level each scheduled fault's incident has (tests/agent/test_demo_faults.py)."""


def test_each_fault_phase_outlasts_its_confirmation_and_each_pause_its_recovery() -> None:
    config = load_config(bundled_config(), Config, env={})
    (site,) = config.sites
    intervals = {c.name: c.interval or config.defaults.interval for c in site.checks}
    for i, phase in enumerate(SCHEDULE):
        for fault in phase.faults:
            check = FAULT_CHECKS[fault]
            policy = policy_for(config, site.name, check)
            runs = policy.confirmations(LEVELS[fault])
            needed = (runs + 1) * intervals[check]
            assert phase.seconds >= needed, (fault, phase.seconds, needed)
            pause = SCHEDULE[(i + 1) % len(SCHEDULE)]
            assert not pause.faults and pause.seconds >= (policy.recover + 1) * intervals[
                check], (fault, pause.seconds)
