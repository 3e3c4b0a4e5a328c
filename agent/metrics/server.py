"""The /metrics and /healthz HTTP server, on its own threads so a scrape never blocks probes."""

from __future__ import annotations

import gzip
import json
import logging
import selectors
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.metrics.webconfig import BasicAuth, WebConfig, server_ssl_context

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 1024
REQUEST_TIMEOUT_S = 30.0
"""A client that sends nothing (or drips) for this long is disconnected (its own thread only)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    health: Callable[[], dict[str, Any]]
    tls: ssl.SSLContext | None = None
    auth: BasicAuth | None = None
    timeout = 0.0  # handle_request() only ever runs on a ready socket

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:  # handshake later, in the connection's own thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def serve_until_woken(self, wake: socket.socket) -> None:
        """Handle requests until a byte arrives on ``wake``, sleeping in ``select`` between
        them (``serve_forever`` polls twice a second: a wake-up an idle agent does not need)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    self.handle_request()  # ready: returns at once (timeout 0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client's TLS or protocol error is its problem: one debug line, no traceback.
        log.debug("metrics http: %s from %s", sys.exc_info()[1], client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def do_GET(self) -> None:
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

    def _send(self, status: int, content_type: str, body: bytes, gzipped: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """Serves the registry on HOST:PORT (port 0 picks a free port: see ``port``), over HTTPS
    and/or behind basic auth when a web config says so (``web_path`` names it in errors)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: Callable[[], dict[str, Any]], web: WebConfig | None = None,
                 web_path: str = "web config") -> None:
        tls = None
        if web is not None and web.tls_server_config is not None:
            tls = server_ssl_context(web.tls_server_config, web_path)  # before binding
        self._server = _Server((host, port), _Handler)
        self._server.registry = registry
        self._server.health = health
        self._server.tls = tls
        if web is not None and web.basic_auth_users:
            self._server.auth = BasicAuth(web.basic_auth_users)
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
