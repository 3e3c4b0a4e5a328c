"""Connectivity guard: is the agent's own network up? Asked when a storefront check fails.

The configured reference targets (well-known sites outside the agency's control) are probed
concurrently; any HTTP answer from any of them means the agent is online. With none configured
the agent always counts as online. The verdict is cached for ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from agent.httpclient import FetchResult, HttpClients, fetch

PROBE_BODY_BYTES = 4096


class ConnectivityGuard:
    """Probes reference targets to tell a storefront outage from the agent's own."""

    def __init__(self, clients: HttpClients, targets: Sequence[str], *, timeout: float = 5.0,
                 ttl: float = 10.0) -> None:
        self.clients = clients
        self.targets = tuple(targets)
        self.timeout = timeout
        self.ttl = ttl
        self._verdict: tuple[float, bool] | None = None
        self._lock = asyncio.Lock()

    async def online(self) -> bool:
        """True if any reference target answers (or none is configured)."""
        if not self.targets:
            return True
        async with self._lock:
            if self._verdict is not None and time.monotonic() - self._verdict[0] < self.ttl:
                return self._verdict[1]
            client = self.clients.get()
            results = await asyncio.gather(*(
                fetch(client, url, timeout=self.timeout, max_body_bytes=PROBE_BODY_BYTES,
                      max_redirects=3) for url in self.targets))
            verdict = any(isinstance(r, FetchResult) for r in results)
            self._verdict = (time.monotonic(), verdict)
            return verdict
