"""A slowloris attack on a MetricsServer with real sockets, and what it did (shared by
test_metrics_slowloris.py and ``python -m tests.faults.report``)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from agent.metrics.server import MetricsServer

ATTACKERS = 200


def wait_for(what: str, condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (without blocking)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Slowloris:
    """``attackers`` connections, each sending a request's headers a line every 0.2 s and never
    finishing them; a connection the server closes is opened again at once."""

    def __init__(self, port: int, attackers: int = ATTACKERS) -> None:
        self.port = port
        self.attackers = attackers
        self.socks: list[socket.socket] = []
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        with contextlib.suppress(OSError):  # cut already: noticed on the next round
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return sock

    def _run(self) -> None:
        self.socks = [self._open() for _ in range(self.attackers)]
        while not self.stop.wait(0.2):
            for i, sock in enumerate(self.socks):
                try:
                    if closed_by_peer(sock):
                        raise ConnectionResetError
                    sock.setblocking(True)
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    sock.close()
                    self.reopened += 1
                    try:
                        self.socks[i] = self._open()
                    except OSError:  # the server stopped: the attack is over
                        return

    def __enter__(self) -> Slowloris:
        self.thread.start()
        wait_for("the attack to open its connections", lambda: len(self.socks) == self.attackers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.socks:
            sock.close()


@dataclass(frozen=True)
class AttackFigures:
    """What a slowloris attack did to a server."""

    seconds: float
    scrapes: int
    scrapes_ok: int
    threads_before: int
    peak_threads: int
    peak_connections: int
    reopened: int


def attack(server: MetricsServer, seconds: float, metric: str) -> AttackFigures:
    """Run the attack for ``seconds`` while scraping /metrics in a loop (a fresh connection
    each time); a scrape is ok when it is answered 200 with ``metric`` in the text."""
    threads_before = threading.active_count()
    peak_threads, peak_connections, scrapes, ok = threads_before, 0, 0, 0
    table = server._server.connections
    with Slowloris(server.port) as slow:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or scrapes < 10:
            try:
                response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
                ok += response.status_code == 200 and metric in response.text
            except httpx.HTTPError:
                pass
            scrapes += 1
            peak_threads = max(peak_threads, threading.active_count())
            peak_connections = max(peak_connections, len(table))
            time.sleep(0.05)
        reopened = slow.reopened
    return AttackFigures(seconds, scrapes, ok, threads_before, peak_threads, peak_connections,
                         reopened)
