"""sd_notify over ``$NOTIFY_SOCKET``: READY, RELOADING, STOPPING, WATCHDOG and STATUS.

A few lines instead of a dependency: one AF_UNIX datagram per message (``@name`` is an abstract
socket). Without ``$NOTIFY_SOCKET`` (not started by systemd) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self.watchdog_s = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False when it could not be delivered."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a backed-up manager must never block the event loop
                sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: str) -> bool:
        """Startup finished."""
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        """A reload starts (systemd ≥ 253 wants MONOTONIC_USEC with it); call ``ready`` after."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}",
                         "STATUS=reloading the config")

    def stopping(self) -> bool:
        """Shutdown starts."""
        return self.send("STOPPING=1", "STATUS=stopping: finishing in-flight checks")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.send(f"STATUS={text}")

    async def watchdog_loop(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Ping the watchdog at half its timeout from the event loop (until cancelled), but
        only while ``alive()`` says the agent does its work (checks still fire).

        The pings come from the event loop itself, so a stuck loop stops them; a loop that runs
        while the checks have stopped stops them through ``alive``. Either way systemd
        restarts the service.
        """
        if self.watchdog_s is None or self.address is None:
            return
        while True:
            if alive():
                self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1_000_000
