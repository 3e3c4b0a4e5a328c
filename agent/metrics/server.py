"""The /metrics, /healthz and /evidence HTTP server, on its own threads so a scrape never
blocks probes.

Bounded against slow or abusive clients (slowloris), so that a /metrics exposed beyond
loopback cannot exhaust the agent's threads or memory:

- at most ``MAX_CONNECTIONS`` (64) connections at once, one thread each. A connection beyond
  that closes the oldest connection still waiting for its request (idle keep-alive or a client
  still dripping its headers); when every connection is busy answering, the new one is closed;
- a connection must deliver its complete request headers (TLS handshake included) within
  ``HEADER_TIMEOUT_S`` (10 s) of connecting or of its previous response, however it drips them;
- request headers are at most ``MAX_HEADER_BYTES`` (16 KiB) per request;
- a response write that makes no progress for ``REQUEST_TIMEOUT_S`` (30 s) ends the connection.

A scrape (Prometheus sends its request at once) keeps being answered during such an attack.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.evidence import URL_PREFIX, serve
from agent.metrics.webconfig import (
    BasicAuth,
    RateLimiter,
    WebConfig,
    peer_sans,
    server_ssl_context,
)

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 1024
REQUEST_TIMEOUT_S = 30.0
"""A socket operation that makes no progress for this long ends the connection."""
MAX_CONNECTIONS = 64
"""Connections (= handler threads) at once; see the module docstring for what happens beyond."""
HEADER_TIMEOUT_S = 10.0
"""Whole time a connection has to deliver its request headers (TLS handshake included)."""
MAX_HEADER_BYTES = 16 * 1024
"""Request line plus headers, per request."""
_WATCHDOG_S = 0.5


class _Connection:
    """Book-keeping of one accepted connection: is it waiting for a request, and until when."""

    __slots__ = ("accepted", "deadline", "sock", "waiting")

    def __init__(self, sock: socket.socket, now: float, header_timeout: float) -> None:
        self.sock = sock
        self.accepted = now
        self.deadline = now + header_timeout
        self.waiting = True

    def cut(self) -> None:
        """Wake the connection's thread out of a blocking read: it sees end-of-file."""
        # the plain socket's shutdown: SSLSocket's own would tear down its TLS state
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _CappedReader:
    """The request stream, refusing request headers beyond ``budget`` bytes."""

    def __init__(self, raw: Any, budget: int) -> None:
        self._raw = raw
        self._budget = budget
        self.remaining = budget

    def reset(self) -> None:
        """A new request: a full budget again."""
        self.remaining = self._budget

    def readline(self, limit: int = -1) -> bytes:
        """One line, counted against the budget."""
        allowed = self.remaining + 1 if limit < 0 else min(limit, self.remaining + 1)
        line: bytes = self._raw.readline(allowed)
        self.remaining -= len(line)
        if self.remaining < 0:
            raise ConnectionAbortedError(f"request headers over {self._budget} bytes")
        return line

    def read(self, size: int = -1) -> bytes:
        """Body bytes (not counted: /metrics takes no body, and the handler reads none)."""
        data: bytes = self._raw.read(size)
        return data

    def close(self) -> None:
        """Close the underlying stream."""
        self._raw.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    health: Callable[[], dict[str, Any]]
    tls: ssl.SSLContext | None = None
    auth: BasicAuth | None = None
    headers: dict[str, str] = {}
    limiter: RateLimiter | None = None
    allowed_sans: frozenset[str] = frozenset()
    evidence_root: Path | None = None
    timeout = 0.0  # handle_request() only ever runs on a ready socket
    request_queue_size = 128  # a burst of connects waits in the backlog instead of failing
    max_connections = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT_S

    def server_bind(self) -> None:
        self.connections: dict[int, _Connection] = {}
        self.connections_lock = threading.Lock()
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:  # handshake later, in the connection's own thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection within the bound, closing the oldest waiting one if needed."""
        now = time.monotonic()
        with self.connections_lock:
            if len(self.connections) >= self.max_connections:
                waiting = [c for c in self.connections.values() if c.waiting]
                if not waiting:
                    log.debug("metrics http: %d connections busy, refusing %s",
                              len(self.connections), client_address)
                    return False  # the caller closes it
                oldest = min(waiting, key=lambda c: c.accepted)
                del self.connections[id(oldest.sock)]
                oldest.cut()
            self.connections[id(request)] = _Connection(request, now, self.header_timeout)
        return True

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.pop(id(request), None)
        super().shutdown_request(request)

    def request_started(self, request: Any) -> None:
        """The connection waits for its next request: its header deadline starts now."""
        with self.connections_lock:
            conn = self.connections.get(id(request))
            if conn is not None:
                conn.waiting = True
                conn.deadline = time.monotonic() + self.header_timeout

    def request_received(self, request: Any) -> None:
        """The connection's request headers are in: it is busy, not to be evicted."""
        with self.connections_lock:
            conn = self.connections.get(id(request))
            if conn is not None:
                conn.waiting = False

    def cut_overdue(self) -> None:
        """End every connection that missed its header deadline."""
        now = time.monotonic()
        with self.connections_lock:
            overdue = [c for c in self.connections.values() if c.waiting and c.deadline <= now]
        for conn in overdue:
            conn.cut()

    def serve_until_woken(self, wake: socket.socket) -> None:
        """Handle requests until a byte arrives on ``wake``, sleeping in ``select`` between
        them (``serve_forever`` polls twice a second: a wake-up an idle agent does not need);
        while connections are open, their header deadlines are checked every half second."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                timeout = _WATCHDOG_S if self.connections else None
                for key, _ in selector.select(timeout):
                    if key.fileobj is wake:
                        return
                    self.handle_request()  # ready: returns at once (timeout 0)
                self.cut_overdue()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client's TLS or protocol error is its problem: one debug line, no traceback.
        log.debug("metrics http: %s from %s", sys.exc_info()[1], client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.rfile = _CappedReader(self.rfile, MAX_HEADER_BYTES)  # type: ignore[assignment]
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
            allowed = self.server.allowed_sans
            if allowed and not peer_sans(self.request.getpeercert()) & allowed:
                raise ConnectionAbortedError("client certificate has no allowed SAN")

    def handle_one_request(self) -> None:
        self.server.request_started(self.request)
        self.rfile.reset()  # type: ignore[attr-defined]
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.request_received(self.request)
        return ok

    def end_headers(self) -> None:
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        if self.server.limiter is not None and not self.server.limiter.allow():
            self.send_response(429)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "18")
            self.send_header("Retry-After", "1")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"Too Many Requests\n")
            return
        if self.server.auth is not None and not self.server.auth.allows(
                self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="storewatch"')
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "13")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"Unauthorized\n")
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            health = self.server.health()
            body = json.dumps(health).encode()
            self._send(200 if health.get("status") == "ok" else 503, "application/json", body)
        elif path.startswith(URL_PREFIX) and self.server.evidence_root is not None:
            served = serve(self.server.evidence_root, path[len(URL_PREFIX):])
            self._send(served.status, served.content_type, served.body, extra={
                "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
                "Content-Security-Policy": "default-src 'none'"})
        elif path == "/":
            self._send(200, "text/html; charset=utf-8",
                       b'<html><body><h1>storewatch</h1><p><a href="/metrics">/metrics</a> '
                       b'<a href="/healthz">/healthz</a></p></body></html>')
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.server.registry)
        except Exception:
            log.exception("metrics collection failed")
            self._send(500, "text/plain; charset=utf-8", b"metrics collection failed\n")
            return
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "") and len(body) >= GZIP_MIN_BYTES
        if gzipped:
            body = gzip.compress(body, compresslevel=6)
        self._send(200, content_type, body, gzipped)

    def _send(self, status: int, content_type: str, body: bytes, gzipped: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """Serves the registry on HOST:PORT (port 0 picks a free port: see ``port``), over HTTPS
    and/or behind basic auth when a web config says so (``web_path`` names it in errors);
    with ``evidence_root``, also ``GET /evidence/<site>/<file>`` from that folder only
    (``agent.evidence.serve``), behind the same TLS, auth and rate limit."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: Callable[[], dict[str, Any]], web: WebConfig | None = None,
                 web_path: str = "web config", max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT_S,
                 evidence_root: Path | None = None) -> None:
        tls = None
        if web is not None and web.tls_server_config is not None:
            tls = server_ssl_context(web.tls_server_config, web_path)  # before binding
        self._server = _Server((host, port), _Handler)
        self._server.max_connections = max_connections
        self._server.header_timeout = header_timeout
        self._server.registry = registry
        self._server.health = health
        self._server.evidence_root = evidence_root
        self._server.tls = tls
        if web is not None and web.basic_auth_users:
            self._server.auth = BasicAuth(web.basic_auth_users)
        if web is not None:
            self._server.headers = {k: v for k, v in web.http_server_config.headers.items() if v}
            if web.rate_limit is not None and web.rate_limit.interval > 0:
                self._server.limiter = RateLimiter(web.rate_limit)
            if web.tls_server_config is not None:
                self._server.allowed_sans = frozenset(web.tls_server_config.client_allowed_sans)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._server.serve_until_woken,
                                        args=(self._wake_r,), name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self._server.tls is not None else "http"

    @property
    def host(self) -> str:
        """The address actually bound."""
        return str(self._server.server_address[0])

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._wake_w.send(b"x")
            self._thread.join(timeout=5.0)
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()
