"""A small HTTP proxy on loopback for the proxy tests: CONNECT tunnels and absolute-form
forwarding, optional Basic auth, and a record of every request head it received.

It only ever connects to loopback targets (anything else gets 403), so a test cannot send
traffic off the machine through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class SeenRequest:
    """One request head as the proxy received it."""

    line: str
    headers: dict[str, str]


@dataclass
class LoopbackProxy:
    """The running proxy: its URL parts and what it saw."""

    host: str
    port: int
    seen: list[SeenRequest] = field(default_factory=list)

    def url(self, userinfo: str = "") -> str:
        """``http://[userinfo@]host:port``."""
        return f"http://{userinfo + '@' if userinfo else ''}{self.host}:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers, raw


@contextlib.asynccontextmanager
async def loopback_proxy(credentials: tuple[str, str] | None = None
                         ) -> AsyncIterator[LoopbackProxy]:
    """Run the proxy on 127.0.0.1:<free port> until the block ends."""
    expected = None
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        expected = f"Basic {token}"
    state = LoopbackProxy("127.0.0.1", 0)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line, headers, raw = await _read_head(reader)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        state.seen.append(SeenRequest(line, headers))
        method, target, _ = [*line.split(" ", 2), "", ""][:3]
        if expected is not None and headers.get("proxy-authorization") != expected:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
        else:
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
            origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [h for h in raw.decode("latin-1").split("\r\n")[1:]
                    if h and not h.lower().startswith("proxy-authorization:")]
            raw = "\r\n".join([f"{method} {origin_form} HTTP/1.1", *kept, "", ""]).encode(
                "latin-1")
        if host not in LOOPBACK:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(raw)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
