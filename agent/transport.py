"""A lean HTTP/1.1 transport under the httpx API: one fresh connection per request.

Stock httpx (httpcore + h11 + anyio) spends 2.5x blackbox_exporter's CPU per probe
(perf-anchors.md). A monitor opens a fresh connection per probe and never pools, so most of that
machinery is not needed: this transport writes the request itself, parses the response with
``httptools`` (llhttp, C) from an ``asyncio.Protocol``, and closes the connection when the body
is done or the response is closed. What it keeps of httpx's contract:

* ``request.extensions["timeout"]``: ``connect`` bounds DNS + TCP + TLS (and each connection
  attempt), ``read`` bounds each wait for data; they raise ``httpx.ConnectTimeout`` /
  ``httpx.ReadTimeout``.
* Connection failures raise ``httpx.ConnectError`` chained to the OS/TLS error (so
  ``describe_transport_error`` sees DNS, refused and certificate errors); malformed or cut-off
  responses raise ``httpx.RemoteProtocolError``.
* The body streams: at most ``HIGH_WATER`` bytes are buffered before the socket is paused, so a
  reader that stops at its size cap never pulls a huge body into memory.
* ``response.extensions["network_stream"]`` answers ``get_extra_info("ssl_object")`` for the
  peer certificate.

Connecting like a browser: the host is the URL's A-label (IDNA 2008, as httpx encodes it) for
DNS, SNI and ``Host``; every address is resolved and raced with Happy Eyeballs (RFC 8305:
families interleaved, the next attempt after 250 ms or as soon as one fails, the first
connection wins), so an address that drops packets costs 250 ms, not the probe. Requests go
through an HTTP proxy when ``agent.proxy`` rules say so (CONNECT for https). Header names and
values with CR, LF or NUL are refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httptools
import httpx

from agent.proxy import Proxy, ProxyRules

HIGH_WATER = 256 * 1024
"""Buffered body bytes above which the socket is paused until the reader catches up."""

CONNECT_ATTEMPT_TIMEOUT = 10.0
"""Seconds one connection attempt may take when the request sets no connect timeout."""

HAPPY_EYEBALLS_DELAY = 0.25
"""RFC 8305's Connection Attempt Delay: the next address is tried after this (or at once
when an attempt fails), while earlier attempts keep going."""

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]



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


class _TunnelReply(asyncio.Protocol):
    """A proxy's answer to CONNECT: the status line and headers, nothing after them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[bytes] = loop.create_future()
        self._data = b""

    def data_received(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end >= 0 and not self.done.done():
            self.done.set_result(self._data[:end])
        elif len(self._data) > 64 * 1024 and not self.done.done():
            self.done.set_exception(OSError("proxy answered CONNECT with an oversized header"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(OSError("proxy closed the connection during CONNECT"))


Resolver = Callable[[str, int], Awaitable[Sequence[AddrInfo]]]
"""``(host, port)`` → ``getaddrinfo``-shaped address records (the default asks the OS)."""

TransportFactory = Callable[[ssl.SSLContext, ProxyRules], httpx.AsyncBaseTransport]
"""Builds the transport of one shared client (tests inject e.g. a respx router)."""


class LeanTransport(httpx.AsyncBaseTransport):
    """Fresh-connection HTTP/1.1 transport over asyncio with a C response parser."""

    def __init__(self, ssl_context: ssl.SSLContext, proxies: ProxyRules | None = None, *,
                 resolver: Resolver | None = None) -> None:
        self._ssl = ssl_context
        self._proxies = proxies if proxies else None
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a new connection and return the response with a streaming body."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        # The A-label host (IDNA 2008, as httpx encoded it) for DNS, SNI and Host alike.
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if scheme == "https" else 80)
        proxy = self._proxies.for_target(scheme, host, port) if self._proxies else None
        head = _head(request, await request.aread(), proxy if scheme == "http" else None)
        timeouts = request.extensions.get("timeout", {})
        connect_timeout = timeouts.get("connect")
        loop = asyncio.get_running_loop()
        exchange = _Exchange(loop, request.method == "HEAD")
        tls = self._ssl if scheme == "https" else None
        connecting: Awaitable[object]
        if proxy is None and _literal(host, port) is not None:
            # One address, nothing to race or resolve: asyncio's own (cheapest) path.
            connecting = loop.create_connection(lambda: exchange, host, port, ssl=tls,
                                                server_hostname=host if tls else None)
        else:
            connecting = self._connect(loop, exchange, proxy, host, port, tls, connect_timeout)
        try:
            if connect_timeout is None:  # the caller's own deadline bounds it (fetch does)
                await connecting
            else:
                async with asyncio.timeout(connect_timeout):
                    await connecting
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {_authority(host, port)} timed out",
                                       request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        transport = exchange.transport
        assert transport is not None  # set once the connection (or the tunnel's TLS) is up
        try:
            transport.write(head)
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

    async def _connect(self, loop: asyncio.AbstractEventLoop, exchange: _Exchange,
                       proxy: Proxy | None, host: str, port: int, tls: ssl.SSLContext | None,
                       attempt_timeout: float | None) -> None:
        """Connect ``exchange`` to ``host:port`` (directly or through ``proxy``), TLS included."""
        if proxy is not None:
            await self._via_proxy(loop, exchange, proxy, host, port, tls, attempt_timeout)
            return
        sock = await self._open(loop, host, port, attempt_timeout)
        try:
            await loop.create_connection(lambda: exchange, sock=sock, ssl=tls,
                                         server_hostname=host if tls else None)
        except BaseException:
            sock.close()
            raise

    async def _open(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                    attempt_timeout: float | None) -> socket.socket:
        """A connected socket to ``host:port``: every address, raced as RFC 8305 says."""
        infos = _literal(host, port)
        if infos is None:
            resolver = self._resolver
            infos = list(await (resolver(host, port) if resolver is not None else
                                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
            if not infos:
                raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
        if len(infos) == 1:
            return await _attempt(loop, infos[0], attempt_timeout)
        return await _race(loop, _interleaved(infos), attempt_timeout or CONNECT_ATTEMPT_TIMEOUT)

    async def _via_proxy(self, loop: asyncio.AbstractEventLoop, exchange: _Exchange,
                         proxy: Proxy, host: str, port: int, tls: ssl.SSLContext | None,
                         attempt_timeout: float | None) -> None:
        """Connect ``exchange`` through ``proxy``: a CONNECT tunnel (then TLS) for https, the
        proxy connection itself for http (the request goes in absolute form)."""
        try:
            sock = await self._open(loop, proxy.host, proxy.port, attempt_timeout)
        except TimeoutError:
            raise
        except OSError as exc:
            raise OSError(f"proxy {proxy.where}: {exc}") from exc
        reply = _TunnelReply(loop)
        try:
            if tls is None:
                await loop.create_connection(lambda: exchange, sock=sock)
                return
            raw, _ = await loop.create_connection(lambda: reply, sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            authority = _authority(host, port).encode("ascii")
            lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
            if proxy.authorization is not None:
                lines.append(b"Proxy-Authorization: " + proxy.authorization)
            raw.write(b"\r\n".join(lines) + b"\r\n\r\n")
            status_line = (await reply.done).split(b"\r\n", 1)[0]
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") \
                    or not parts[1].startswith(b"2"):
                shown = status_line[:80].decode("latin-1")
                raise OSError(f"proxy {proxy.where} refused CONNECT to "
                              f"{_authority(host, port)}: {shown}")
            secured = await loop.start_tls(raw, exchange, tls, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        if secured is None:  # pragma: no cover - only when the loop is closing
            raise OSError("TLS through the proxy tunnel could not start")
        exchange.connection_made(secured)


def _literal(host: str, port: int) -> list[AddrInfo] | None:
    """An IP-literal host needs no resolver (and no executor hop)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        address: tuple[Any, ...] = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
    return None


def _interleaved(infos: Sequence[AddrInfo]) -> list[AddrInfo]:
    """The resolver's order, families alternating, starting with the first one (RFC 8305 §4)."""
    by_family: dict[int, deque[AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], deque()).append(info)
    queues = list(by_family.values())
    order: list[AddrInfo] = []
    while queues:
        for queue in list(queues):
            order.append(queue.popleft())
            if not queue:
                queues.remove(queue)
    return order


async def _attempt(loop: asyncio.AbstractEventLoop, info: AddrInfo,
                   timeout: float | None) -> socket.socket:
    """One TCP connection attempt with its own deadline; the socket is closed on failure."""
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if timeout is None:
            await loop.sock_connect(sock, address)
        else:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _race(loop: asyncio.AbstractEventLoop, infos: list[AddrInfo],
                attempt_timeout: float) -> socket.socket:
    """Happy Eyeballs: start an attempt, then the next one after ``HAPPY_EYEBALLS_DELAY`` or
    as soon as one fails; the first connected socket wins and the other attempts are
    cancelled (their sockets closed)."""
    waiting = deque(infos)
    running: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    winner: socket.socket | None = None
    try:
        while waiting or running:
            if waiting:
                running.add(loop.create_task(_attempt(loop, waiting.popleft(), attempt_timeout)))
            done, _ = await asyncio.wait(running, timeout=HAPPY_EYEBALLS_DELAY if waiting
                                         else None, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                running.discard(task)
                error = task.exception()
                if error is not None:
                    errors.append(error)
                elif winner is None:
                    winner = task.result()
                else:  # two connected at once: keep the first
                    task.result().close()
            if winner is not None:
                return winner
    finally:
        for task in running:
            task.cancel()
    if all(isinstance(e, TimeoutError) for e in errors):
        raise TimeoutError
    failures = [e for e in errors if not isinstance(e, TimeoutError)]
    if len(errors) == 1 or len({str(e) for e in errors}) == 1:
        raise failures[0]
    described = "; ".join(dict.fromkeys(str(e) or type(e).__name__ for e in errors))
    raise OSError(f"all {len(errors)} addresses failed: {described}") from failures[0]


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_FORBIDDEN_IN_HEAD = re.compile(rb"[\r\n\0]")


def _head(request: httpx.Request, body: bytes, proxy: Proxy | None) -> bytes:
    """Request line, headers (``Connection: close``) and body, ready to write; in absolute
    form with ``Proxy-Authorization`` when it goes to an http forward ``proxy``.

    A header name or value with CR, LF or NUL (which would let a value inject headers or a
    second request) raises ``httpx.LocalProtocolError``: nothing is sent.
    """
    url = request.url
    target = url.raw_path
    if proxy is not None:
        target = url.raw_scheme + b"://" + url.netloc + target
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
    if proxy is not None and proxy.authorization is not None:
        lines.append(b"Proxy-Authorization: " + proxy.authorization)
    lines.append(b"Connection: close")
    head = b"\r\n".join(lines)
    # Three C scans instead of a check per header: only the separators may be CR or LF.
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1 \
            or b"\0" in head:
        _refuse(request)
    return head + b"\r\n\r\n" + body


def _refuse(request: httpx.Request) -> None:
    for name, value in request.headers.raw:
        if _FORBIDDEN_IN_HEAD.search(name) or _FORBIDDEN_IN_HEAD.search(value):
            shown = name.decode("latin-1")[:60].encode("unicode_escape").decode("ascii")
            raise httpx.LocalProtocolError(
                f"header {shown!r} contains CR, LF or NUL: not sent (header injection)",
                request=request)
    raise httpx.LocalProtocolError("request line contains CR, LF or NUL", request=request)
