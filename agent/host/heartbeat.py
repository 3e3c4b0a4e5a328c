"""Outbound heartbeat: a GET to a healthchecks-style URL every interval, so a dead agent is
noticed from outside. A failed ping is logged once per failure streak, never raised."""

from __future__ import annotations

import asyncio
import logging
import time

from agent.config.schema import Heartbeat
from agent.httpclient import FetchError, HttpClients, fetch

log = logging.getLogger(__name__)


class HeartbeatSender:
    """Pings ``settings.url``; remembers when a ping last got a 2xx."""

    def __init__(self, clients: HttpClients) -> None:
        self.clients = clients
        self.last_success: float | None = None
        self._failing = False

    async def ping(self, settings: Heartbeat) -> bool:
        """One ping within ``settings.timeout``; True on a 2xx answer."""
        result = await fetch(self.clients.get(), settings.url, timeout=settings.timeout,
                             max_body_bytes=4096, max_redirects=3)
        ok = not isinstance(result, FetchError) and 200 <= result.status < 300
        if ok:
            self.last_success = time.time()
            if self._failing:
                log.info("heartbeat delivered again")
        elif not self._failing:
            why = (result.failure.value if isinstance(result, FetchError)
                   else f"HTTP {result.status}")
            log.warning("heartbeat ping failed (%s); the agent looks dead from outside", why)
        self._failing = not ok
        return ok

    async def loop(self, settings: Heartbeat) -> None:
        """Ping every ``settings.interval`` until cancelled."""
        while True:
            await self.ping(settings)
            await asyncio.sleep(settings.interval)
