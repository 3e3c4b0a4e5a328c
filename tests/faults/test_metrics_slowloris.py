"""The /metrics server under slowloris (real sockets): connections and threads stay bounded,
headers get a whole-request deadline and a size cap, and scrapes keep being answered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from agent.metrics.server import MAX_CONNECTIONS, MAX_HEADER_BYTES, MetricsServer
from tests.faults.slowloris import attack, closed_by_peer, wait_for

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


def test_scrapes_are_answered_during_200_slow_connections(server: MetricsServer) -> None:
    figures = attack(server, 2.5 * HEADER_TIMEOUT_S, "storewatch_test_up 1.0")  # past deadline
    assert figures.scrapes_ok == figures.scrapes >= 10
    assert figures.reopened > 0  # the server cut slow connections instead of keeping them
    # the server's threads stay bounded (the attack itself runs on one thread; a thread whose
    # connection was just cut may still be ending when its successor starts)
    assert figures.peak_connections <= MAX_CONNECTIONS
    assert figures.peak_threads <= figures.threads_before + 1 + MAX_CONNECTIONS + ENDING_SLACK
    wait_for("the server's connections to end", lambda: not server._server.connections)
    wait_for("the server's threads to end",
             lambda: threading.active_count() <= figures.threads_before)


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
