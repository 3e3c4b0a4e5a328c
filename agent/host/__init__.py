"""The server the agent runs on: resources, service groups, mail queue and heartbeat."""

from __future__ import annotations

from agent.host.monitor import HostMonitor

__all__ = ["HostMonitor"]
