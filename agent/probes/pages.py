"""Fetching a site's pages for the page-oriented probes (catalog, search, integrity, security)."""

from __future__ import annotations

from datetime import datetime

from agent.httpclient import FetchError, FetchFailure, FetchResult
from agent.probes.base import ProbeContext
from agent.probes.budget import CheckRequests, slow_summary
from classifier import Evidence, Finding, FindingKind

ACCEPT_HTML = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8"


class PageFetcher:
    """GETs paths of one site for one run: each request within its own timeout, all within the
    check's budget and the site's request slots (agent/probes/budget.py). Pages slower than
    ``latency_threshold`` are remembered for one ``slow_response`` finding (``report_slow``)."""

    def __init__(self, ctx: ProbeContext, max_body_bytes: int, max_redirects: int = 5,
                 latency_threshold: float | None = None) -> None:
        self.ctx = ctx
        self.requests = CheckRequests(ctx, max_body_bytes=max_body_bytes,
                                      max_redirects=max_redirects)
        self.latency_threshold = latency_threshold
        self.slow: list[tuple[str, float, float]] = []
        self.slow_urls: list[str] = []
        self.out_of_budget: list[FetchError] = []

    def url(self, path: str) -> str:
        """Absolute URL of a path on the site."""
        return self.ctx.site.base_url + path

    async def get(self, url_or_path: str, max_body_bytes: int | None = None, *,
                  timed: bool = True) -> FetchResult | FetchError:
        """One GET (path on the site or absolute URL); ``timed``: held against the latency
        threshold (pages are, their assets are not)."""
        url = self.url(url_or_path) if url_or_path.startswith("/") else url_or_path
        where = f"page {url_or_path}" if url_or_path.startswith("/") else url
        res = await self.requests.fetch(url, where=where, headers={"Accept": ACCEPT_HTML},
                                        max_body_bytes=max_body_bytes)
        if isinstance(res, FetchError):
            if res.failure is FetchFailure.BUDGET:
                self.out_of_budget.append(res)
        elif timed and self.latency_threshold is not None and \
                res.total_s > self.latency_threshold:
            self.slow.append((where, res.total_s, self.latency_threshold))
            self.slow_urls.append(res.url)
        return res

    def report_slow(self, out: Findings) -> None:
        """Add the run's ``slow_response`` finding: slow pages and a used-up budget, if any."""
        if not self.slow and not self.out_of_budget:
            return
        parts = [slow_summary(self.slow)] if self.slow else []
        parts += [e.message for e in self.out_of_budget[:1]]
        if len(self.out_of_budget) > 1:
            parts.append(f"{len(self.out_of_budget) - 1} more page(s) not checked for lack "
                         "of budget")
        url = self.slow_urls[0] if self.slow_urls else self.out_of_budget[0].url
        timings = {f"page-{i + 1}": s for i, (_, s, _) in enumerate(self.slow)}
        facts = {"seconds": max(s for _, s, _ in self.slow)} if self.slow else {}
        out.add(FindingKind.SLOW_RESPONSE, "; ".join(parts),
                Evidence(url=url, timings=timings,
                         details={"slow_pages": str(len(self.slow)),
                                  "budget_s": f"{self.requests.budget:g}",
                                  "request_timeout_s": f"{self.requests.request_timeout:g}"}),
                **facts)


def is_slow_not_broken(res: FetchResult | FetchError) -> bool:
    """Whether a fetch failed only because the check's budget ran out (reported as slow)."""
    return isinstance(res, FetchError) and res.failure is FetchFailure.BUDGET


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
