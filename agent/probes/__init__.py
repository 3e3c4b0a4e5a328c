"""Probes, one module per check type, and the registry from YAML ``type`` to implementation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent.config.schema import (
    AvailabilityCheck,
    BrowserCheck,
    CatalogCheck,
    CheckSpec,
    IntegrityCheck,
    SearchCheck,
    SecurityCheck,
    StepsCheck,
)
from agent.probes.availability import probe_availability
from agent.probes.base import Probe, ProbeContext, ProbeResult
from agent.probes.browser import probe_browser
from agent.probes.catalog import probe_catalog
from agent.probes.checkout import probe_steps
from agent.probes.integrity import probe_integrity
from agent.probes.search import probe_search
from agent.probes.security import probe_security

S = TypeVar("S")


def _for(spec_type: type[S], probe: Callable[[S, ProbeContext], Awaitable[ProbeResult]]) -> Probe:
    """``probe`` as a registry entry that accepts only its own spec type."""

    async def run(spec: CheckSpec, ctx: ProbeContext) -> ProbeResult:
        if not isinstance(spec, spec_type):
            raise TypeError(f"{probe.__name__} cannot run a {type(spec).__name__}")
        return await probe(spec, ctx)

    run.__name__ = probe.__name__
    return run


PROBES: dict[str, Probe] = {
    "availability": _for(AvailabilityCheck, probe_availability),
    "checkout": _for(StepsCheck, probe_steps),
    "feature": _for(StepsCheck, probe_steps),
    "catalog": _for(CatalogCheck, probe_catalog),
    "search": _for(SearchCheck, probe_search),
    "filter": _for(SearchCheck, probe_search),
    "integrity": _for(IntegrityCheck, probe_integrity),
    "security": _for(SecurityCheck, probe_security),
    "browser": _for(BrowserCheck, probe_browser),
}
"""Check ``type`` in the config → the probe that runs it."""
