"""A hostile storefront on loopback: raw asyncio streams, so it can misbehave in ways a polite
web framework would not allow (drip bytes, lie about lengths, reset mid-body, serve bombs).

Every endpoint is listed in ``ENDPOINTS`` (path → what it does). Healthy pages carry ``MARKER``
so a check can assert it; hostile bodies are generated lazily and never held in memory whole.
``start_hostile`` serves plain HTTP plus one TLS listener per certificate it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache

MARKER = "storewatch-hostile-ok"
OK_PAGE = (f"<!doctype html><html><head><title>ok</title></head><body><main id='maincontent'>"
           f"<h1>{MARKER}</h1></main></body></html>").encode()
CHUNK = 64 * 1024
GIB = 1 << 30
LONG_LINE_BYTES = 50 * 1024 * 1024
NESTING = 400_000
BOMB_DECODED_BYTES = GIB

Writer = asyncio.StreamWriter
Handler = Callable[["HostileServer", Writer], Awaitable[None]]


def _head(status: str = "200 OK", content_type: str = "text/html; charset=utf-8",
          **extra: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _ok(server: HostileServer, w: Writer) -> None:
    w.write(_head(Content_Length=len(OK_PAGE)) + OK_PAGE)


async def _drip_headers(server: HostileServer, w: Writer) -> None:
    """Slowloris in the headers: the header block never ends."""
    w.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while True:
        await w.drain()
        await asyncio.sleep(1.0)
        w.write(b"a")


async def _drip_body(server: HostileServer, w: Writer) -> None:
    """Slowloris in the body: headers promise a page, then one byte a second forever."""
    w.write(_head(Content_Length=1_000_000) + b"<html>")
    while True:
        await w.drain()
        await asyncio.sleep(1.0)
        w.write(b"x")


async def _endless(server: HostileServer, w: Writer) -> None:
    """A chunked body that never ends, as fast as the client reads."""
    w.write(_head(Transfer_Encoding="chunked"))
    block = b"%x\r\n%s\r\n" % (CHUNK, b"<p>endless</p>".ljust(CHUNK, b" "))
    while True:
        w.write(block)
        await w.drain()


async def _stream(w: Writer, total: int, pattern: bytes, tail: bytes = b"") -> None:
    block = (pattern * (CHUNK // len(pattern) + 1))[:CHUNK]
    left = total - len(tail)
    while left > 0:
        w.write(block[:left])
        left -= min(left, CHUNK)
        await w.drain()
    w.write(tail)


async def _gigabyte(server: HostileServer, w: Writer) -> None:
    """1 GiB announced and sent (generated on the fly), the marker only at the very end."""
    w.write(_head(Content_Length=GIB))
    await _stream(w, GIB, b"<p>filler</p>\n", MARKER.encode())


async def _long_line(server: HostileServer, w: Writer) -> None:
    """A 50 MB page on one line, the marker at its end."""
    w.write(_head(Content_Length=LONG_LINE_BYTES))
    await _stream(w, LONG_LINE_BYTES, b"<span>x</span>", MARKER.encode())


@cache
def gzip_bomb(decoded: int = BOMB_DECODED_BYTES) -> bytes:
    """A gzip stream of ``decoded`` zero bytes, about 1000x smaller (one compressed MiB block
    repeated: after a full flush deflate output for the same input is the same)."""
    mib = bytes(1 << 20)
    enc = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = enc.compress(mib) + enc.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(decoded >> 20):
        crc = zlib.crc32(mib, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + block * (decoded >> 20)
            + enc.flush() + struct.pack("<II", crc, decoded & 0xFFFFFFFF))


def _gzip(data: bytes) -> bytes:
    enc = zlib.compressobj(9, zlib.DEFLATED, 31)
    return enc.compress(data) + enc.flush()


async def _gzip_bomb(server: HostileServer, w: Writer) -> None:
    """1 MB on the wire, 1 GiB once decoded."""
    body = gzip_bomb()
    w.write(_head(Content_Encoding="gzip", Content_Length=len(body)))
    await _stream_bytes(w, body)


@cache
def gzip_bomb_nested() -> bytes:
    """The bomb gzipped again: 2 KB on the wire, 1 GiB out."""
    return _gzip(gzip_bomb())


async def _gzip_bomb_nested(server: HostileServer, w: Writer) -> None:
    """The bomb gzipped again (``Content-Encoding: gzip, gzip``): 2 KB on the wire, 1 GiB out."""
    body = gzip_bomb_nested()
    w.write(_head(Content_Encoding="gzip, gzip", Content_Length=len(body)))
    await _stream_bytes(w, body)


async def _bad_gzip(server: HostileServer, w: Writer) -> None:
    """Declared gzip, but not gzip at all."""
    body = b"this is not gzip " * 100
    w.write(_head(Content_Encoding="gzip", Content_Length=len(body)) + body)


async def _deflate_raw(server: HostileServer, w: Writer) -> None:
    """``deflate`` sent as a raw stream without the zlib header (common; must still decode)."""
    enc = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = enc.compress(OK_PAGE) + enc.flush()
    w.write(_head(Content_Encoding="deflate", Content_Length=len(body)) + body)


async def _stream_bytes(w: Writer, body: bytes) -> None:
    for at in range(0, len(body), CHUNK):
        w.write(body[at:at + CHUNK])
        await w.drain()


async def _redirect_loop(server: HostileServer, w: Writer) -> None:
    w.write(_head("302 Found", Location="/redirect-loop", Content_Length=0))


async def _redirect_away(server: HostileServer, w: Writer) -> None:
    """To the same server under another host name (``localhost``): a cross-host redirect."""
    w.write(_head("302 Found", Location=f"http://localhost:{server.port}/echo",
                  Set_Cookie="session=s3ss10n-cookie; Path=/", Content_Length=0))


async def _redirect_file(server: HostileServer, w: Writer) -> None:
    """To a local file: never followed."""
    w.write(_head("302 Found", Location="file:///etc/passwd", Content_Length=0))


async def _redirect_plain(server: HostileServer, w: Writer) -> None:
    """To the plain-HTTP listener of the same host (from TLS: a downgrade and a port change)."""
    w.write(_head("302 Found", Location=f"{server.url}/echo", Content_Length=0))


async def _redirect_same(server: HostileServer, w: Writer) -> None:
    """To another page of the same origin."""
    w.write(_head("302 Found", Location="/echo", Content_Length=0))


async def _echo(server: HostileServer, w: Writer) -> None:
    """An OK page that records the request's headers (see ``HostileServer.seen``)."""
    await _ok(server, w)


async def _reset(server: HostileServer, w: Writer) -> None:
    """Promise 1 MB, send 64 KiB, then reset the connection (RST, not a clean close)."""
    w.write(_head(Content_Length=1_000_000) + b"<html>" + b"x" * CHUNK)
    await w.drain()
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


async def _nested(server: HostileServer, w: Writer) -> None:
    """400,000 unclosed nested <div>s (2 MB), no <main>."""
    body = b"<html><body>" + b"<div>" * NESTING + MARKER.encode()
    w.write(_head(Content_Length=len(body)))
    await _stream_bytes(w, body)


async def _bad_utf8(server: HostileServer, w: Writer) -> None:
    """Declared UTF-8, full of invalid sequences around the marker."""
    junk = b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc" * 1000
    body = b"<html><body>" + junk + MARKER.encode() + junk + b"</body></html>"
    w.write(_head(Content_Length=len(body)) + body)


async def _bad_json(server: HostileServer, w: Writer) -> None:
    """A JSON API answer cut off in the middle (valid length, invalid document)."""
    body = b'{"status": "ok", "items": [{"sku": "A1", "price": 12.5}, {"sku": "B2", "pri'
    w.write(_head(content_type="application/json", Content_Length=len(body)) + body)


async def _lie_type(server: HostileServer, w: Writer) -> None:
    """An HTML page sent as image/png."""
    w.write(_head(content_type="image/png", Content_Length=len(OK_PAGE)) + OK_PAGE)


async def _lie_charset(server: HostileServer, w: Writer) -> None:
    """A UTF-8 page declared as UTF-16: decoded as declared, the marker is gone."""
    w.write(_head(content_type="text/html; charset=utf-16", Content_Length=len(OK_PAGE))
            + OK_PAGE)


async def _lie_length_long(server: HostileServer, w: Writer) -> None:
    """Content-Length says 100 kB, 100 bytes come, then the connection closes."""
    w.write(_head(Content_Length=100_000) + OK_PAGE[:100])


async def _lie_length_short(server: HostileServer, w: Writer) -> None:
    """Content-Length says 20 bytes, the whole page follows (the marker is past byte 20)."""
    w.write(_head(Content_Length=20) + OK_PAGE)


async def _body(server: HostileServer, w: Writer) -> None:
    """Serves ``server.body`` as is (for fuzzing body assertions)."""
    w.write(_head(content_type=server.content_type, Content_Length=len(server.body))
            + server.body)


ENDPOINTS: dict[str, Handler] = {
    "/ok": _ok, "/echo": _echo, "/body": _body,
    "/drip-headers": _drip_headers, "/drip-body": _drip_body, "/endless": _endless,
    "/gigabyte": _gigabyte, "/gzip-bomb": _gzip_bomb, "/gzip-bomb-nested": _gzip_bomb_nested,
    "/bad-gzip": _bad_gzip, "/deflate-raw": _deflate_raw, "/redirect-loop": _redirect_loop,
    "/redirect-away": _redirect_away, "/redirect-plain": _redirect_plain,
    "/redirect-file": _redirect_file,
    "/redirect-same": _redirect_same, "/reset": _reset,
    "/nested": _nested, "/bad-utf8": _bad_utf8, "/long-line": _long_line,
    "/bad-json": _bad_json, "/lie-type": _lie_type, "/lie-charset": _lie_charset,
    "/lie-length-long": _lie_length_long, "/lie-length-short": _lie_length_short,
}


@dataclass
class HostileServer:
    """The running server: ``url`` (plain HTTP) and ``tls_urls`` by certificate name."""

    port: int = 0
    tls_urls: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(host header, path, headers with lower-case names) of every request, in order."""
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    """What ``/body`` serves."""
    _servers: list[asyncio.Server] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1].split("?")[0]
            pairs = (line.split(": ", 1) for line in header_lines if ": " in line)
            headers = {name.lower(): value for name, value in pairs}
            self.seen.append((headers.get("host", ""), path, headers))
            handler = ENDPOINTS.get(path)
            if handler is None:
                writer.write(_head("404 Not Found", Content_Length=0))
            else:
                await handler(self, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError, IndexError):
            pass  # the client gave up, as it should
        except asyncio.CancelledError:
            pass  # closed by ``close``: end quietly (asyncio logs a cancelled handler task)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def start_hostile(tls: dict[str, ssl.SSLContext] | None = None) -> HostileServer:
    """Serve every endpoint on 127.0.0.1 (plain) and one TLS listener per ``tls`` entry."""
    # the bombs are built before serving: built on first request, inside the server's loop,
    # they took the probe's whole 1 s timeout on a loaded machine (site_down, not a bomb)
    await asyncio.to_thread(gzip_bomb_nested)
    hostile = HostileServer()
    plain = await asyncio.start_server(hostile._serve, "127.0.0.1", 0)
    hostile._servers.append(plain)
    hostile.port = plain.sockets[0].getsockname()[1]
    for name, ctx in (tls or {}).items():
        server = await asyncio.start_server(hostile._serve, "127.0.0.1", 0, ssl=ctx)
        hostile._servers.append(server)
        hostile.tls_urls[name] = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    return hostile


@contextlib.asynccontextmanager
async def hostile_server(tls: dict[str, ssl.SSLContext] | None = None
                         ) -> AsyncIterator[HostileServer]:
    """``start_hostile`` as an async context manager."""
    server = await start_hostile(tls)
    try:
        yield server
    finally:
        await server.close()

