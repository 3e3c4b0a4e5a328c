"""The server the agent runs on: resources, service groups, mail queue and heartbeat.

``agent.host.monitor.HostMonitor`` runs them as scheduler jobs; the package itself imports
nothing, so the metrics collectors can use ``agent.host.assess`` without pulling in the
scheduler (which imports the collectors).
"""

from __future__ import annotations

__all__: list[str] = []
