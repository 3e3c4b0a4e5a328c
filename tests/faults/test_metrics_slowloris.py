"""The /metrics server under slowloris (real sockets): connections and threads stay bounded,
headers get a whole-request deadline and a size cap, and scrapes keep being answered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from agent.metrics.server import MAX_CONNECTIONS, MAX_HEADER_BYTES, MetricsServer

ATTACKERS = 200
ENDING_SLACK = 16
HEADER_TIMEOUT_S = 2.0  # the documented 10 s, shortened so the test need not wait for it


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    Gauge("storewatch_test_up", "a metric a scrape must see", registry=registry).set(1)
    srv = MetricsServer("127.0.0.1", 0, registry, lambda: {"ok": True},
                        header_timeout=HEADER_TIMEOUT_S)
    srv.start()
    yield srv
    srv.stop()


def wait_for(what: str, condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Slowloris:
    """ATTACKERS connections, each sending a request's headers a few bytes at a time and never
    finishing them; a connection the server closes is opened again at once."""

    def __init__(self, port: int) -> None:
        self.port = port
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
        self.socks = [self._open() for _ in range(ATTACKERS)]
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
                    except OSError:  # the server stopped: the test is over
                        return

    def __enter__(self) -> Slowloris:
        self.thread.start()
        wait_for("the attack to open its connections", lambda: len(self.socks) == ATTACKERS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.socks:
            sock.close()


def test_scrapes_are_answered_during_200_slow_connections(server: MetricsServer) -> None:
    threads_before = threading.active_count()
    peak_threads = threads_before
    peak_connections = 0
    answered = 0
    table = server._server.connections
    with Slowloris(server.port) as attack:
        deadline = time.monotonic() + 2.5 * HEADER_TIMEOUT_S  # past the header deadline
        while time.monotonic() < deadline or answered < 10:
            response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
            assert response.status_code == 200
            assert "storewatch_test_up 1.0" in response.text
            answered += 1
            peak_threads = max(peak_threads, threading.active_count())
            peak_connections = max(peak_connections, len(table))
            time.sleep(0.05)
        assert attack.reopened > 0  # the server cut slow connections instead of keeping them
    # the server's threads stay bounded (the attack itself runs on one thread; a thread whose
    # connection was just cut may still be ending when its successor starts)
    assert peak_connections <= MAX_CONNECTIONS
    assert peak_threads <= threads_before + 1 + MAX_CONNECTIONS + ENDING_SLACK, peak_threads
    wait_for("the server's connections to end", lambda: not table)
    wait_for("the server's threads to end", lambda: threading.active_count() <= threads_before)


def test_headers_dripped_forever_are_cut_at_the_whole_request_deadline(
        server: MetricsServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    # one byte every 0.2 s: never idle long enough for a per-read timeout to end it
    while not closed_by_peer(sock):
        assert time.monotonic() - started < 10 * HEADER_TIMEOUT_S, "still open"
        sock.setblocking(True)
        try:
            sock.sendall(b"X")
        except OSError:
            break
        time.sleep(0.2)
    sock.close()


def test_oversized_request_headers_get_no_answer(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(2 * MAX_HEADER_BYTES // len(filler)):
                sock.sendall(filler)
            sock.sendall(b"\r\n")
        except OSError:
            pass  # closed while we were still sending: that is the point
        sock.settimeout(10)
        try:
            reply = sock.recv(65536)
        except OSError:
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:100]


def test_a_request_within_the_cap_is_answered(server: MetricsServer) -> None:
    headers = {f"X-Fill-{i}": "a" * 100 for i in range(50)}  # ~6 KiB
    response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
