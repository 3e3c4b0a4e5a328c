"""The bounded queue between the scheduler and the incident engine, and its overflow policy.

Observations wait here while the engine is busy (a slow disk, a store locked by the CLI). The
queue holds ``maxsize`` of them; when a new one would exceed that, the **oldest observation
without an L1 finding** is dropped and counted (``storewatch_incident_queue_dropped_total``):
its check runs again on its next interval, so the incident catches up. An observation with an
L1 finding is never dropped: when every queued observation has one, the queue grows past its
bound rather than lose an emergency.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from agent.pipeline import Observation
from classifier import Level

QUEUE_SIZE = 1000
"""Observations kept waiting before the overflow policy drops non-L1 ones."""


def has_l1(obs: Observation) -> bool:
    """Whether any finding of ``obs`` was classified L1."""
    return any(c.decision.level is Level.L1 for c in obs.classified)


class ObservationQueue:
    """FIFO of observations, bounded for everything but L1 (see the module docstring)."""

    def __init__(self, maxsize: int = QUEUE_SIZE,
                 on_drop: Callable[[Observation], None] | None = None) -> None:
        self.maxsize = maxsize
        self._items: deque[Observation] = deque()
        self._ready = asyncio.Event()
        self._on_drop = on_drop

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        """Nothing is waiting."""
        return not self._items

    def put(self, obs: Observation) -> None:
        """Queue ``obs``; past the bound, drop the oldest non-L1 observation (maybe ``obs``)."""
        self._items.append(obs)
        if len(self._items) > self.maxsize:
            victim = next((i for i, o in enumerate(self._items) if not has_l1(o)), None)
            if victim is not None:
                dropped = self._items[victim]
                del self._items[victim]
                if self._on_drop is not None:
                    self._on_drop(dropped)
        self._ready.set()

    async def get(self) -> Observation:
        """The oldest observation, waiting for one if none is queued."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
