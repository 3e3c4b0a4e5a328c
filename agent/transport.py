"""A lean HTTP/1.1 transport under the httpx API: one fresh connection per request.

Stock httpx (httpcore + h11 + anyio) spends 2.5x blackbox_exporter's CPU per probe
(perf-anchors.md). A monitor opens a fresh connection per probe and never pools, so most of that
machinery is not needed: this transport writes the request itself, parses the response with
``httptools`` (llhttp, C) from an ``asyncio.Protocol``, and closes the connection when the body
is done or the response is closed. What it keeps of httpx's contract:

* ``request.extensions["timeout"]``: ``connect`` bounds DNS + TCP + TLS, ``read`` bounds each
  wait for data; they raise ``httpx.ConnectTimeout`` / ``httpx.ReadTimeout``.
* Connection failures raise ``httpx.ConnectError`` chained to the OS/TLS error (so
  ``describe_transport_error`` sees DNS, refused and certificate errors); malformed or cut-off
  responses raise ``httpx.RemoteProtocolError``.
* The body streams: at most ``HIGH_WATER`` bytes are buffered before the socket is paused, so a
  reader that stops at its size cap never pulls a huge body into memory.
* ``response.extensions["network_stream"]`` answers ``get_extra_info("ssl_object")`` for the
  peer certificate.

httpcore (with anyio and h11, ~3 MiB of RSS) is not imported unless needed: when a test library
has patched httpcore's connection pool (respx's default mocker), requests go to a stock httpx
transport instead, so the patch still intercepts them.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

HIGH_WATER = 256 * 1024
"""Buffered body bytes above which the socket is paused until the reader catches up."""



class _Exchange(asyncio.Protocol):
    """One connection carrying one request and its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, head_only: bool) -> None:
        self._loop = loop
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.reason = b""
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.error: BaseException | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._field = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.complete or self.error is not None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.complete:  # bytes after a complete response are the server's problem
                self.error = httpx.RemoteProtocolError(f"malformed response: {exc}")
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.complete and self.error is None:
            self.error = httpx.ReadError(str(exc) or type(exc).__name__)
            self.error.__cause__ = exc
        self._ended()

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the real answer follows
            self.headers, self.reason = [], b""
            return
        self.status = status
        self.headers_done = True
        if self._head_only:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.chunks.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True

    # reader side
    def _ended(self) -> None:
        if not self.complete and self.error is None:
            if self.headers_done and not self._has_framing():
                self.complete = True  # body delimited by the end of the connection
            else:
                self.error = httpx.RemoteProtocolError(
                    "server closed the connection before the response was complete")
        self._wake()

    def _has_framing(self) -> bool:
        for name, _ in self.headers:
            if name.lower() in (b"content-length", b"transfer-encoding"):
                return True
        return False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Wait for more data, the end of the message, or an error."""
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        handle = (self._loop.call_later(timeout, self._timed_out, self._waiter)
                  if timeout is not None else None)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()
        if self.error is not None:
            raise self.error

    @staticmethod
    def _timed_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("timed out waiting for the response"))

    def take(self) -> bytes:
        """Everything buffered so far (resumes a paused socket)."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        """Drop the connection (idempotent)."""
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; closing it closes the connection."""

    def __init__(self, exchange: _Exchange, read_timeout: float | None) -> None:
        self._exchange = exchange
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        ex = self._exchange
        try:
            while True:
                if ex.chunks:
                    yield ex.take()
                elif ex.complete:
                    return
                else:
                    await ex.wait(self._read_timeout)
        finally:
            if ex.complete:
                ex.close()

    async def aclose(self) -> None:
        self._exchange.close()


class _NetworkStream:
    """The ``network_stream`` extension: enough of httpcore's to read TLS details."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def get_extra_info(self, info: str) -> Any:
        """``ssl_object``, ``peername``, ... as asyncio reports them."""
        return self._transport.get_extra_info(info)


class LeanTransport(httpx.AsyncBaseTransport):
    """Fresh-connection HTTP/1.1 transport over asyncio with a C response parser."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._stock: httpx.AsyncHTTPTransport | None = None

    async def aclose(self) -> None:
        """Close the stock fallback transport if one was made (lean connections close alone)."""
        if self._stock is not None:
            await self._stock.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a new connection and return the response with a streaming body."""
        if _httpcore_patched():
            if self._stock is None:
                self._stock = httpx.AsyncHTTPTransport(
                    verify=self._ssl, trust_env=False,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))
            return await self._stock.handle_async_request(request)
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        loop = asyncio.get_running_loop()
        exchange = _Exchange(loop, request.method == "HEAD")
        tls = self._ssl if scheme == "https" else None
        connect = loop.create_connection(lambda: exchange, host, port, ssl=tls,
                                         server_hostname=host if tls else None)
        connect_timeout = timeouts.get("connect")
        try:
            if connect_timeout is None:  # the caller's own deadline bounds it (fetch does)
                await connect
            else:
                async with asyncio.timeout(connect_timeout):
                    await connect
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out",
                                       request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        transport = exchange.transport
        assert transport is not None  # set by connection_made before create_connection returns
        try:
            transport.write(await _head(request))
            read_timeout = timeouts.get("read")
            while not exchange.headers_done:
                await exchange.wait(read_timeout)
        except BaseException:
            exchange.close()
            raise
        return httpx.Response(
            exchange.status, headers=exchange.headers,
            stream=_Body(exchange, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": exchange.reason,
                        "network_stream": _NetworkStream(transport)},
        )


def _httpcore_patched() -> bool:
    httpcore = sys.modules.get("httpcore")
    if httpcore is None:
        return False
    handler = httpcore.AsyncConnectionPool.handle_async_request
    return not getattr(handler, "__module__", "").startswith("httpcore.")


async def _head(request: httpx.Request) -> bytes:
    """Request line, headers (``Connection: close``) and body, ready to write."""
    body = await request.aread()
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    chunked = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"connection":
            continue
        if lower == b"transfer-encoding" and value.lower() == b"chunked":
            chunked = True
            continue
        lines.append(name + b": " + value)
    if chunked:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
