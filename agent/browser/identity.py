"""The agent's identity on the requests a browser journey's pages make to the monitored site.

Requests to the site's own origin carry ``X-Storewatch-Agent`` and a User-Agent that is
Chromium's own followed by the agent's (``... Safari/537.36 storewatch/1.0 (...; agent a1)``);
requests to any other origin (analytics, CDNs, payment iframes) go out as Chromium sends them.
A context-wide ``extra_http_headers`` would reach every origin, so this is a route on the
site's origin only: other requests never make a round trip through the agent. As with the
HTTP probes, a redirect that the site itself answers keeps the request's headers for its next
hop (Playwright applies a route's header overrides to the redirects it starts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.identity import AGENT_HEADER

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Route

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_pattern(base_url: str) -> re.Pattern[str] | None:
    """A regex matching the URLs of ``base_url``'s origin as Chromium writes them (lower-case
    host, default port omitted); None for a URL without an http(s) origin."""
    parts = urlsplit(base_url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
    return re.compile("^" + re.escape(f"{parts.scheme}://{netloc}") + r"(?:[/?#]|$)",
                      re.IGNORECASE)


async def send_identity(context: BrowserContext, base_url: str,
                        identity: Mapping[str, str]) -> None:
    """Make every request of ``context`` to ``base_url``'s origin carry ``identity`` (the
    client stack's ``X-Storewatch-Agent`` and User-Agent; agent/httpclient.py)."""
    pattern = origin_pattern(base_url)
    agent = identity.get(AGENT_HEADER)
    if pattern is None or agent is None:
        return
    ours = identity.get("User-Agent", "")

    async def add_identity(route: Route) -> None:
        headers = {**route.request.headers, AGENT_HEADER.lower(): agent}
        if ours:
            browser_ua = headers.get("user-agent", "")
            headers["user-agent"] = f"{browser_ua} {ours}".strip()
        await route.fallback(headers=headers)

    await context.route(pattern, add_identity)
