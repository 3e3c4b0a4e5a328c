"""Probes, one module per check type, and the registry from YAML ``type`` to implementation."""

from __future__ import annotations

from agent.probes.availability import probe_availability
from agent.probes.base import Probe

PROBES: dict[str, Probe] = {
    "availability": probe_availability,
}
"""Check ``type`` in the config → the probe that runs it."""
