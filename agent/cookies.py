"""A per-run cookie jar for step checks: a shopper's session, never shared between runs.

The shared HTTP clients store no cookies (see agent/httpclient.py); a step check hands one of
these to ``fetch`` so every hop, redirects included, stores ``Set-Cookie`` and sends ``Cookie``
the way a browser would. The rules are the standard library's ``http.cookiejar`` (RFC 6265 as
browsers apply it): ``Domain`` (a cookie for ``shop.example`` reaches ``www.shop.example``;
a host-only cookie does not), ``Path``, ``Secure`` (never sent over plain http), ``Expires`` and
``Max-Age`` (deleted when past), values sent back exactly as set (quotes kept).

A shop's cookie flood is capped as browsers cap it: at most ``MAX_COOKIES`` cookies per run,
``MAX_COOKIE_BYTES`` per cookie (name and value), ``MAX_HEADER_BYTES`` per ``Cookie`` header;
what is left out is counted (``flood_evidence``) and reported as the shop's behaviour.
"""

from __future__ import annotations

import email.message
import time
import urllib.request
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy

import httpx

MAX_COOKIES = 180
"""Cookies kept per run (Chrome keeps 180 per domain, Firefox 150)."""
MAX_COOKIE_BYTES = 4096
"""Name plus value of one cookie (RFC 6265 section 6.1's minimum, what browsers enforce)."""
MAX_HEADER_BYTES = 8192
"""One ``Cookie`` request header (nginx's default header buffer is 8 KiB)."""


class _Response:
    """What ``CookieJar.extract_cookies`` reads from a response: its headers."""

    def __init__(self, headers: httpx.Headers) -> None:
        self._message = email.message.Message()
        for raw in headers.get_list("set-cookie"):
            self._message["Set-Cookie"] = raw

    def info(self) -> email.message.Message:
        return self._message


class _CappedJar(CookieJar):
    """A ``CookieJar`` that refuses oversized cookies and keeps at most ``MAX_COOKIES``."""

    def __init__(self) -> None:
        # DomainStrictNonDomain: a cookie set without Domain goes back to its host only
        super().__init__(DefaultCookiePolicy(
            rfc2965=False, strict_ns_domain=DefaultCookiePolicy.DomainStrictNonDomain))
        self.ignored = 0

    def set_cookie(self, cookie: Cookie) -> None:
        size = len(cookie.name) + len(cookie.value or "")
        stored: dict[str, dict[str, dict[str, Cookie]]] = self._cookies  # type: ignore[attr-defined]
        known = cookie.name in stored.get(cookie.domain, {}).get(cookie.path, {})
        if size > MAX_COOKIE_BYTES or (not known and len(self) >= MAX_COOKIES):
            self.ignored += 1
            return
        super().set_cookie(cookie)


class RunCookies:
    """One run's cookies with a browser's rules (see the module docstring)."""

    def __init__(self) -> None:
        self._jar = _CappedJar()
        self.offered = 0
        """``Set-Cookie`` headers received this run."""
        self.header_cut = 0
        """Cookies left out of a ``Cookie`` header to keep it under ``MAX_HEADER_BYTES``."""

    @property
    def ignored(self) -> int:
        """Cookies the caps left out this run (not stored, or not sent)."""
        return self._jar.ignored + self.header_cut

    def store(self, url: str, headers: httpx.Headers) -> None:
        """Take the ``Set-Cookie`` headers of a response from ``url``."""
        count = len(headers.get_list("set-cookie"))
        if count == 0:
            return
        self.offered += count
        self._jar.extract_cookies(_Response(headers),  # type: ignore[arg-type]
                                  urllib.request.Request(url))

    def header(self, url: str) -> str | None:
        """The ``Cookie`` header for a request to ``url`` (None when there are none)."""
        request = urllib.request.Request(url)
        self._jar.add_cookie_header(request)
        value = request.get_header("Cookie") or request.unredirected_hdrs.get("Cookie")
        if not value or len(value) <= MAX_HEADER_BYTES:
            return value or None
        kept: list[str] = []
        size = cut = 0
        for pair in value.split("; "):
            if size + len(pair) + 2 > MAX_HEADER_BYTES:
                cut += 1
                continue
            kept.append(pair)
            size += len(pair) + 2
        self.header_cut = max(self.header_cut, cut)
        return "; ".join(kept) or None

    def get(self, name: str) -> str | None:
        """A live cookie's value from any host of this run (for extractors)."""
        now = int(time.time())
        for cookie in self._jar:
            if cookie.name == name and not cookie.is_expired(now):
                return cookie.value
        return None

    def flood_evidence(self) -> dict[str, str]:
        """Evidence of a cookie flood (empty when the shop stayed within the caps)."""
        if not self.ignored:
            return {}
        return {"cookies_offered": str(self.offered), "cookies_ignored": str(self.ignored),
                "cookie_caps": f"{MAX_COOKIES} cookies, {MAX_COOKIE_BYTES} B each, "
                               f"{MAX_HEADER_BYTES} B per Cookie header"}
