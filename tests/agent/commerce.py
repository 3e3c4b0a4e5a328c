"""Helpers for the commerce probe tests: one-check configs and running them."""

from __future__ import annotations

from typing import Any

from agent.config.schema import Config
from agent.httpclient import HttpClients
from agent.probes import PROBES
from agent.probes.base import ProbeContext, ProbeResult, run_guarded
from agent.state.baselines import BaselineStore
from classifier import FindingKind


def one_check(base_url: str, check: dict[str, Any], platform: str = "generic") -> Config:
    """A config with one site and one check (validated like a file)."""
    return Config.model_validate({"sites": [{"name": "shop", "base_url": base_url,
                                             "platform": platform, "checks": [check]}]})


async def run_check(clients: HttpClients, config: Config, *, timeout: float = 5.0,
                    baselines: BaselineStore | None = None,
                    request_timeout: float | None = None) -> ProbeResult:
    """Run the config's only check once through the registry, guarded like the scheduler
    (``timeout``: the check's budget; ``request_timeout``: each request's, default the budget)."""
    site = config.sites[0]
    spec = site.checks[0]
    ctx = ProbeContext(clients, site, timeout, baselines=baselines,
                       request_timeout=request_timeout)
    return await run_guarded(PROBES[spec.type], spec, ctx)


def kinds(result: ProbeResult) -> list[FindingKind]:
    """The kinds of a result's findings, in order."""
    return [f.kind for f in result.findings]
