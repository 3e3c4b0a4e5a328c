"""The one HTTP client stack every probe shares.

One ``httpx.AsyncClient`` per TLS setting (verify on with the OS trust store, certifi's bundle
where the OS has none, a site's own CA file, or verify off), each built once with one SSL
context: a client per request measured 22x the CPU. Requests go over ``agent.transport``'s lean
fresh-connection transport: connections are not kept alive between probes (a monitor measures
a shopper's fresh connection, and httpcore's idle-pool scan costs more than it saves at
monitoring concurrency).

``fetch`` adds what a monitor needs on top of httpx: a deadline over the whole exchange, a body
size cap, bounded redirects followed by hand (credentials dropped when the host changes), the
peer certificate's expiry, and failures returned as a typed ``FetchError`` instead of raising a
zoo of transport exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from agent.errors import ConfigError
from agent.identity import AGENT_HEADER, identified, user_agent
from agent.politeness import Politeness
from agent.proxy import ProxyRules, parse_proxy_url
from agent.transport import LeanTransport, TransportFactory

if TYPE_CHECKING:
    from agent.config.schema import AgentSettings

SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FetchFailure(StrEnum):
    """Why a request got no usable response (bounded: used in findings and metrics)."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TLS_EXPIRED = "tls_expired"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BUDGET = "budget"
    """The check's total budget ran out before this request answered (earlier ones were slow,
    or it waited for the site's request slots): slow, not broken."""


@dataclass(frozen=True, slots=True)
class FetchError:
    """A request that produced no usable response."""

    failure: FetchFailure
    message: str
    url: str
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A response, its body (capped) and how long each part took."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    redirects: tuple[str, ...]
    response_s: float
    """Request sent to response headers received (last hop)."""
    total_s: float
    """Whole exchange, redirects and body included."""
    cert_not_after: float | None = None
    """Peer certificate expiry (epoch seconds) of the final hop when it was HTTPS and verified."""
    extra: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """Body decoded as the response says (UTF-8 fallback), undecodable bytes replaced."""
        charset = _charset(self.headers.get("content-type", "")) or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return None


class _NoCookies(CookieJar):
    """A jar that never stores: the shared client must not carry cookies between probes."""

    def __init__(self) -> None:
        super().__init__(policy=DefaultCookiePolicy(allowed_domains=[]))

    def extract_cookies(self, response: object, request: object) -> None:
        """Store nothing (the policy alone let cookies of IP-address hosts through)."""

    def set_cookie(self, cookie: Cookie) -> None:
        """Store nothing."""


class CookieStore(Protocol):
    """One run's cookies (agent/cookies.py): what ``fetch`` stores and sends per hop."""

    def store(self, url: str, headers: httpx.Headers) -> None: ...

    def header(self, url: str) -> str | None: ...


class _NullCookies(httpx.Cookies):
    """Cookies that are never stored, and Set-Cookie is never parsed (12 % of a probe's CPU)."""

    def __init__(self) -> None:
        super().__init__(_NoCookies())

    def extract_cookies(self, response: httpx.Response) -> None:
        """Ignore the response's cookies."""

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Ignore: the shared client carries no cookies."""


class _ProbeClient(httpx.AsyncClient):
    """The shared AsyncClient with a cookie jar that stays empty.

    httpx copies a jar passed as ``cookies=`` into a plain ``CookieJar``, which would carry a
    site's cookies from one probe to the next; this client's ``cookies`` is always empty.
    """

    _null_cookies = _NullCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return self._null_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        """Ignored: the shared client carries no cookies."""


_ClientKey = tuple[bool, str | None, str | None]


def _tls_key(verify: bool, ca_file: Path | None) -> tuple[bool, str | None]:
    return verify, str(ca_file) if ca_file else None


class HttpClients:
    """The shared client stack: one AsyncClient per TLS setting and proxy, one SSL context per
    TLS setting.

    Requests honour ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` (read once, here)
    unless a site names its own ``proxy``. ``transport`` builds each client's transport from
    its SSL context and proxy rules (default: ``LeanTransport``; tests inject others).
    ``agent`` (``agent.name``) goes on every request as ``X-Storewatch-Agent`` (agent/identity.py);
    ``user_agent`` should name it too (``agent.identity.user_agent``).
    """

    def __init__(self, user_agent: str, *, agent: str | None = None,
                 transport: TransportFactory | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.agent = agent
        """The agent's name on every request (None: no ``X-Storewatch-Agent``)."""
        self.identity: dict[str, str] = {"User-Agent": user_agent}
        """The headers that say who is asking (a browser sends them to the site's origin)."""
        if agent is not None:
            self.identity[AGENT_HEADER] = agent
        self._transport = transport or LeanTransport
        try:
            self._env_proxies = ProxyRules.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.politeness = Politeness()
        """Per-site request slots every probe's requests go through (agent/politeness.py)."""
        self._clients: dict[_ClientKey, httpx.AsyncClient] = {}
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}

    @classmethod
    def for_agent(cls, settings: AgentSettings, *,
                  transport: TransportFactory | None = None) -> HttpClients:
        """The client stack of the agent ``settings`` describe: its name and User-Agent on
        every request."""
        return cls(user_agent(settings), agent=settings.name, transport=transport)

    def ssl_context(self, *, verify: bool = True, ca_file: Path | None = None) -> ssl.SSLContext:
        """The SSL context of a TLS setting, built on first use and shared afterwards."""
        key = _tls_key(verify, ca_file)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = _ssl_context(verify, ca_file)
        return context

    def get(self, *, verify: bool = True, ca_file: Path | None = None,
            proxy: str | None = None) -> httpx.AsyncClient:
        """The client for a TLS setting (and a site's ``proxy`` URL, which overrides the
        environment's proxies), built on first use and shared afterwards."""
        key = (*_tls_key(verify, ca_file), proxy)
        client = self._clients.get(key)
        if client is None:
            context = self.ssl_context(verify=verify, ca_file=ca_file)
            rules = ProxyRules.only(parse_proxy_url(proxy)) if proxy else self._env_proxies
            client = _ProbeClient(
                verify=context,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
                transport=self._transport(context, rules),
                # Only the codings fetch decodes with a bound (br/zstd would be decoded unbounded)
                headers={**self.identity, "Accept-Encoding": "gzip, deflate"},
                trust_env=False,
            )
            self._clients[key] = client
        return client

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        """Close every client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _system_ca_dir() -> str | None:
    capath = ssl.get_default_verify_paths().capath
    if capath and next(Path(capath).glob("*.0"), None) is not None:
        return capath
    return None


def _ssl_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    system_dir = _system_ca_dir()
    if system_dir is not None:
        # The OS store as a hashed directory: OpenSSL loads a CA only when a chain needs it
        # (certifi's bundle, loaded whole, costs 3 MiB of RSS in every agent).
        return ssl.create_default_context(capath=system_dir)
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float,
    max_body_bytes: int,
    max_redirects: int,
    cookies: CookieStore | None = None,
) -> FetchResult | FetchError:
    """One exchange with redirects, within ``timeout`` seconds overall. Never raises for the
    server's faults: they come back as a ``FetchError``. With ``cookies`` (one run's jar),
    every hop stores the cookies it is sent and sends the cookies of its host. The client's
    ``X-Storewatch-Agent`` wins over one in ``headers``, and a User-Agent in ``headers`` gets the
    agent's name (agent/identity.py)."""
    start = time.perf_counter()
    own = dict(headers or {})
    agent = client.headers.get(AGENT_HEADER)
    if agent is not None and own:
        own = identified(own, agent)
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(client, url, method, own, content, timeout,
                                max_body_bytes, max_redirects, start, cookies)
    except TimeoutError:
        return FetchError(FetchFailure.TIMEOUT, f"no complete response within {timeout:g}s",
                          url, time.perf_counter() - start)
    except httpx.HTTPError as exc:
        failure, message = describe_transport_error(exc)
        request_url = str(exc.request.url) if _has_request(exc) else url
        return FetchError(failure, message, request_url, time.perf_counter() - start)
    except httpx.InvalidURL as exc:  # e.g. a redirect or a shop-supplied value with CR/LF
        return FetchError(FetchFailure.PROTOCOL, f"invalid URL: {exc}", url,
                          time.perf_counter() - start)


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - property raises when unset
    except RuntimeError:
        return False
    return True


_NO_PHASE_TIMEOUT = httpx.Timeout(None)


@functools.lru_cache(maxsize=65_536)
def _parsed_url(url: str) -> httpx.URL:
    # Parsing a URL is a tenth of httpx's per-request CPU; a check fetches the same URL each run.
    return httpx.URL(url)


async def _fetch(client: httpx.AsyncClient, url: str, method: str, headers: dict[str, str],
                 content: bytes | None, timeout: float, max_body: int, max_redirects: int,
                 start: float, cookies: CookieStore | None = None) -> FetchResult | FetchError:
    hops: list[str] = []
    origin = _origin(url)
    while True:
        hop_headers = headers
        jar_cookie = cookies.header(url) if cookies is not None else None
        if jar_cookie is not None and not any(k.lower() == "cookie" for k in headers):
            hop_headers = {**headers, "Cookie": jar_cookie}  # a configured Cookie header wins
        # No per-phase timers: fetch's own deadline already bounds the whole exchange.
        request = client.build_request(method, _parsed_url(url), headers=hop_headers,
                                       content=content, timeout=_NO_PHASE_TIMEOUT)
        sent = time.perf_counter()
        response = await _send(client, request)
        try:
            response_s = time.perf_counter() - sent
            if cookies is not None:
                cookies.store(url, response.headers)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location is not None:
                if len(hops) >= max_redirects:
                    return FetchError(FetchFailure.TOO_MANY_REDIRECTS,
                                      f"more than {max_redirects} redirects", url,
                                      time.perf_counter() - start)
                hops.append(url)
                url = urljoin(url, location)
                scheme = urlsplit(url).scheme.lower()
                if scheme not in ("http", "https"):
                    return FetchError(FetchFailure.PROTOCOL,
                                      f"redirect to unsupported URL scheme '{scheme}' "
                                      "(only http and https are followed)", url,
                                      time.perf_counter() - start)
                if not _same_origin(origin, _origin(url)):
                    headers = {k: v for k, v in headers.items()
                               if k.lower() not in SENSITIVE_HEADERS}
                if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"):
                    method, content = "GET", None
                continue
            cert_not_after = _peer_cert_not_after(response)
            body, truncated = await _read_capped(response, max_body)
            return FetchResult(url=url, status=response.status_code, headers=response.headers,
                               body=body, truncated=truncated, redirects=tuple(hops),
                               response_s=response_s, total_s=time.perf_counter() - start,
                               cert_not_after=cert_not_after)
        finally:
            await response.aclose()


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """``client.send(request, stream=True)``; for the shared clients, without the layers they
    never use (auth, event hooks, cookie extraction, redirect handling): 7 % of a probe's CPU."""
    if type(client) is not _ProbeClient:
        return await client.send(request, stream=True)
    transport = client._transport_for_url(request.url)  # respx's httpx mocker patches this
    try:
        response = await transport.handle_async_request(request)
    except httpx.HTTPError as exc:
        if not _has_request(exc):
            exc.request = request
        raise
    response.request = request
    return response


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname or "", parts.port or default_port


def _same_origin(origin: tuple[str, str, int | None], target: tuple[str, str, int | None]) -> bool:
    # Credentials go only where they were meant to: same scheme, host and port, or the
    # http -> https upgrade of the same host (as httpx and browsers allow).
    upgrade = origin[0] == "http" and target[0] == "https" and target[2] in (None, 443) \
        and origin[2] in (None, 80)
    return origin == target or (upgrade and origin[1] == target[1])


async def _read_capped(response: httpx.Response, max_body: int) -> tuple[bytes, bool]:
    # Raw bytes, decoded here in bounded steps: httpx's own decoders inflate a whole network
    # chunk at once (64 KiB of a gzip bomb is 64 MiB, and ``gzip, gzip`` multiplies that again),
    # so the cap must apply to decoded bytes while they are being produced.
    chunks: list[bytes] = []
    size = 0
    async with contextlib.aclosing(_decoded(response)) as pieces:
        async for chunk in pieces:
            room = max_body - size
            if len(chunk) >= room:
                chunks.append(chunk[:room])
                return b"".join(chunks), len(chunk) > room or await _more(pieces)
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks), False


async def _more(pieces: AsyncIterator[bytes]) -> bool:
    # The cap was hit exactly: it is truncated only if the body has anything left.
    async for chunk in pieces:
        if chunk:
            return True
    return False


async def _decoded(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    if response.is_stream_consumed:
        # A response built with its content already in memory (a mock transport): httpx has
        # decoded it, and its size was bounded by whoever built it.
        yield response.content
        return
    decoder = _BoundedDecoder(response.headers.get_list("content-encoding", split_commas=True))
    async for data in response.aiter_raw():
        for piece in decoder.feed(data):
            yield piece
    for piece in decoder.flush():
        yield piece


DECODE_STEP_BYTES = 64 * 1024
"""Most bytes one decoding step may produce (per Content-Encoding layer)."""


class _BoundedDecoder:
    """``Content-Encoding`` decoding (gzip, deflate, identity; unknown codings pass through, as
    in httpx) that never produces more than ``DECODE_STEP_BYTES`` per step and layer."""

    def __init__(self, encodings: list[str]) -> None:
        codings = [e.strip().lower() for e in encodings]
        # Listed in the order applied: decode the last one first.
        self._layers = [_Inflate(c) for c in reversed(codings) if c in ("gzip", "deflate")]

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data``, produced lazily (stop iterating to stop decoding)."""
        return self._through(0, data)

    def flush(self) -> Iterator[bytes]:
        """What is left once the raw body has ended."""
        return self._through(0, b"", final=True)

    def _through(self, index: int, data: bytes, final: bool = False) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        layer = self._layers[index]
        for piece in layer.decode(data, final):
            yield from self._through(index + 1, piece)
        if final:
            yield from self._through(index + 1, b"", final=True)


class _Inflate:
    """One gzip or deflate layer, decompressing at most ``DECODE_STEP_BYTES`` per step."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding == "gzip"
        self._first = True
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)

    def decode(self, data: bytes, final: bool = False) -> Iterator[bytes]:
        """Decoded pieces of ``data`` (``final``: also what the decompressor still holds)."""
        buffer, full = data, False
        while buffer or full or final:
            if self._z.eof:
                return  # trailing bytes after the stream end are ignored, as in httpx
            try:
                out = self._z.decompress(buffer, DECODE_STEP_BYTES)
            except zlib.error as exc:
                if self._first and not self._gzip:  # deflate sent raw, without zlib header
                    self._first = False
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"cannot decode {self._coding}: {exc}") from None
            self._first = False
            buffer = self._z.unconsumed_tail
            full = len(out) == DECODE_STEP_BYTES  # more may be waiting inside the decompressor
            if out:
                yield out
            elif not buffer:
                return

    @property
    def _coding(self) -> str:
        return "gzip" if self._gzip else "deflate"


def _peer_cert_not_after(response: httpx.Response) -> float | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    ssl_object = stream.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.context.verify_mode == ssl.CERT_NONE:
        return None  # verification off: Python does not decode unverified certificates
    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        return None
    # Decoding the certificate to a dict is 5 % of an HTTPS probe; a site's cert rarely changes.
    if der not in _EXPIRY:
        if len(_EXPIRY) >= 4096:
            _EXPIRY.clear()
        cert = ssl_object.getpeercert()
        not_after = cert.get("notAfter") if cert else None
        _EXPIRY[der] = (float(ssl.cert_time_to_seconds(not_after))
                        if isinstance(not_after, str) else None)
    return _EXPIRY[der]


_EXPIRY: dict[bytes, float | None] = {}
"""Certificate (DER) → expiry, so each distinct certificate is decoded once."""


def describe_transport_error(exc: BaseException) -> tuple[FetchFailure, str]:
    """Map an httpx/OS/TLS exception to a bounded failure class and a one-line message."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            reason = err.verify_message or str(err)
            if "expired" in reason:
                return FetchFailure.TLS_EXPIRED, f"TLS certificate verify failed: {reason}"
            return FetchFailure.TLS, f"TLS certificate verify failed: {reason}"
        if isinstance(err, ssl.SSLError):
            return FetchFailure.TLS, f"TLS error: {err.reason or err}"
    if isinstance(exc, httpx.TimeoutException):
        return FetchFailure.TIMEOUT, f"timed out ({type(exc).__name__})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if any(s in lowered for s in ("name or service not known", "nodename nor servname",
                                  "temporary failure in name resolution", "no address associated",
                                  "name does not resolve", "getaddrinfo")):
        return FetchFailure.DNS, f"DNS lookup failed: {text}"
    if isinstance(exc, httpx.ConnectError):
        return FetchFailure.CONNECT, f"connection failed: {text}"
    if isinstance(exc, httpx.TransportError | httpx.DecodingError):
        return FetchFailure.PROTOCOL, f"{type(exc).__name__}: {text}"
    return FetchFailure.PROTOCOL, f"{type(exc).__name__}: {text}"


def utc_from_epoch(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)
