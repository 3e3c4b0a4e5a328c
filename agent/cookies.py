"""A per-run cookie jar for step checks: a shopper's session, never shared between runs.

The shared HTTP clients store no cookies (see agent/httpclient.py); a step check hands one of
these to ``fetch`` so every hop, redirects included, stores ``Set-Cookie`` and sends ``Cookie``
to the host that set it, and to no other host.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

import httpx


class RunCookies:
    """Cookies by host for one run of one check (host-only: no domain widening)."""

    def __init__(self) -> None:
        self._by_host: dict[str, dict[str, str]] = {}

    def store(self, url: str, headers: httpx.Headers) -> None:
        """Take the ``Set-Cookie`` headers of a response from ``url``."""
        host = urlsplit(url).hostname or ""
        for raw in headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(raw)
            except CookieError:
                continue
            for name, morsel in jar.items():
                cookies = self._by_host.setdefault(host, {})
                max_age = morsel["max-age"]
                if morsel.value == "" or (max_age and max_age.lstrip("-").isdigit()
                                          and int(max_age) <= 0):
                    cookies.pop(name, None)
                else:
                    cookies[name] = morsel.value

    def header(self, url: str) -> str | None:
        """The ``Cookie`` header for a request to ``url`` (None when there are none)."""
        cookies = self._by_host.get(urlsplit(url).hostname or "", {})
        return "; ".join(f"{k}={v}" for k, v in cookies.items()) or None

    def get(self, name: str) -> str | None:
        """A cookie's value from any host of this run (for extractors)."""
        for cookies in self._by_host.values():
            if name in cookies:
                return cookies[name]
        return None
