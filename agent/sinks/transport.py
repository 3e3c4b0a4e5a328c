"""HTTP requests to one tracker: base URL, auth headers, a deadline, a capped body, SinkErrors.

Every failure leaves as ``RetryableSinkError`` (timeout, network, 5xx, 408/425/429) or
``PermanentSinkError`` (other 4xx, a URL off the tracker's host) with scrubbed text: the
status and at most 200 characters of the body, never request headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import httpx

from agent.config.secrets import scrub
from agent.errors import PermanentSinkError, RetryableSinkError, SinkError
from agent.httpclient import describe_transport_error
from agent.sinks.base import raise_for_status

log = logging.getLogger("agent.sinks")

MAX_RESPONSE_BYTES = 1024 * 1024
"""Tracker answers are small JSON documents; anything larger is cut (and then not JSON)."""


class TrackerClient:
    """Requests to one tracker over the shared client, with the sink's auth headers."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, *, sink: str,
                 timeout: float, headers: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.sink = sink
        self.timeout = timeout
        self.headers = dict(headers or {})
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def url(self, path: str) -> str:
        """``path`` (``/rest/api/3/issue``) on the tracker, or an absolute URL on its host."""
        return urljoin(self.base_url + "/", path.lstrip("/")) if "://" not in path else path

    async def request(self, method: str, path: str, *, action: str, json: Any = None,
                      content: bytes | None = None, params: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send one request; return the 2xx response (body read, capped) or raise a SinkError.

        ``action`` names the step in messages, e.g. ``create issue``.
        """
        url = self.url(path)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            # e.g. a pagination link to another host: the credentials must not follow it
            raise PermanentSinkError(
                scrub(f"{self.sink}: {action}: refusing URL on another host: {parts.netloc}"))
        request = self.client.build_request(
            method, url, json=json, content=content, params=params,
            headers={**self.headers, **(headers or {})}, timeout=httpx.Timeout(self.timeout))
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.send(request, stream=True, follow_redirects=False)
                try:
                    body = await _read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise RetryableSinkError(
                f"{self.sink}: {action}: no response within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            _, message = describe_transport_error(exc)
            raise RetryableSinkError(scrub(f"{self.sink}: {action}: {message}")) from None
        answer = httpx.Response(response.status_code, headers=response.headers, content=body,
                                request=request)
        log.debug("%s", scrub(f"{self.sink}: {action}: {method} {_safe_url(request.url)} -> "
                              f"HTTP {answer.status_code}"))
        self.check(answer, f"{self.sink}: {action}")
        return answer

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise the SinkError a non-2xx answer means (scrubbed); sinks may refine this."""
        try:
            raise_for_status(response, what)
        except RetryableSinkError as exc:
            raise RetryableSinkError(scrub(str(exc)), retry_after=exc.retry_after) from None
        except SinkError as exc:
            raise PermanentSinkError(scrub(str(exc))) from None


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: MAX_RESPONSE_BYTES - size])
        size += len(chunks[-1])
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)


def _safe_url(url: httpx.URL) -> str:
    """The URL without userinfo (never in our URLs, but never logged either)."""
    return str(url.copy_with(username=None, password=None))


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The response body as a JSON object; a tracker answering otherwise is retried later."""
    return cast(dict[str, Any], _json(response, what, dict, "object"))


def json_list(response: httpx.Response, what: str) -> list[Any]:
    """The response body as a JSON array (e.g. GitHub's lists)."""
    return cast(list[Any], _json(response, what, list, "array"))


def _json(response: httpx.Response, what: str, kind: type, name: str) -> object:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, kind):
        raise RetryableSinkError(f"{what}: HTTP {response.status_code} without the expected "
                                 f"JSON {name}")
    return data
