"""One dedicated thread for every call on the daemon's incident store.

SQLite waits up to its busy timeout while another process (``storewatch incidents resolve``,
``silence add``) holds the write lock, and ``synchronous=FULL`` waits for the disk on every
commit. Run on the event loop, either would stall every probe, the scheduler and the watchdog
ping. The daemon therefore hands each store call to this one thread: calls stay in order and
never overlap (one connection, one transaction at a time), and the loop only awaits the result.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """Runs store calls one after another in a thread of their own."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storewatch-store")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the store thread; the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish the calls already handed over, then end the thread."""
        self._pool.shutdown(wait=True)


async def run_inline(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """The same signature as ``StoreThread.run``, on the calling thread (CLI, tests)."""
    return fn(*args, **kwargs)
