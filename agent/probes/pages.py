"""Fetching a site's pages for the page-oriented probes (catalog, search, integrity, security)."""

from __future__ import annotations

import time
from datetime import datetime

from agent.httpclient import FetchError, FetchResult, fetch
from agent.probes.base import ProbeContext
from classifier import Evidence, Finding, FindingKind

ACCEPT_HTML = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8"


class PageFetcher:
    """GETs paths of one site within one run's deadline, through the shared client stack."""

    def __init__(self, ctx: ProbeContext, max_body_bytes: int, max_redirects: int = 5) -> None:
        self.ctx = ctx
        self.max_body_bytes = max_body_bytes
        self.max_redirects = max_redirects
        self.deadline = time.perf_counter() + ctx.timeout
        site = ctx.site
        self.client = ctx.clients.get(verify=site.tls.verify, ca_file=site.tls.ca_file,
                                      proxy=site.proxy)

    def url(self, path: str) -> str:
        """Absolute URL of a path on the site."""
        return self.ctx.site.base_url + path

    async def get(self, url_or_path: str, max_body_bytes: int | None = None
                  ) -> FetchResult | FetchError:
        """One GET (path on the site or absolute URL) within what is left of the deadline."""
        url = self.url(url_or_path) if url_or_path.startswith("/") else url_or_path
        remaining = max(0.05, self.deadline - time.perf_counter())
        return await fetch(self.client, url, headers={"Accept": ACCEPT_HTML}, timeout=remaining,
                           max_body_bytes=max_body_bytes or self.max_body_bytes,
                           max_redirects=self.max_redirects)


def ok(res: FetchResult | FetchError) -> bool:
    """Whether a fetch got a 2xx response."""
    return isinstance(res, FetchResult) and 200 <= res.status < 300


def why_not_ok(res: FetchResult | FetchError) -> str:
    """One-line reason a fetch is not a 2xx response."""
    if isinstance(res, FetchError):
        return res.message
    return f"HTTP {res.status}"


def elapsed(res: FetchResult | FetchError) -> float:
    """How long a fetch took, response or not."""
    return res.total_s if isinstance(res, FetchResult) else res.elapsed_s


class Findings:
    """Findings of one run of one check, all observed at the run's start."""

    def __init__(self, site: str, check: str, observed_at: datetime) -> None:
        self.site, self.check, self.observed_at = site, check, observed_at
        self.items: list[Finding] = []

    def add(self, kind: FindingKind, summary: str, evidence: Evidence, **facts: float) -> None:
        """Record one finding."""
        self.items.append(Finding(self.site, self.check, kind, summary, self.observed_at,
                                  evidence, facts))
