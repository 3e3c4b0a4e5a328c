"""Page integrity: pages that answer 200 but are broken for a shopper.

Per page: a platform error signature (Magento, WordPress/WooCommerce, Shopify Liquid, PHP,
Django, Jinja, Twig, Rails, framework debug pages, raw template tags, the site's and the check's
``error_markers``), a missing or empty main-content element, and stylesheets
and scripts of the site's own host that do not load (each asset fetched once per run, at most
``max_assets``, bodies capped) → ``page_corrupted``. Pages answering 5xx/4xx or not at all
while the home page works → ``partial_outage`` (a failing home page is the availability check's).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urljoin, urlsplit

from agent.config.schema import IntegrityCheck
from agent.httpclient import FetchResult
from agent.probes.base import ProbeContext, ProbeResult, StepTiming
from agent.probes.content import error_markers, error_signature, signature_excerpt
from agent.probes.html import parse_html
from agent.probes.pages import (
    Findings,
    PageFetcher,
    elapsed,
    is_slow_not_broken,
    ok,
    why_not_ok,
)
from classifier import Evidence, FindingKind

ASSET_BODY_CAP = 64 * 1024
ASSET_CONCURRENCY = 4


class AssetCache:
    """Each asset URL fetched at most once per run, at most ``limit`` of them."""

    def __init__(self, fetcher: PageFetcher, limit: int) -> None:
        self._fetcher = fetcher
        self._limit = limit
        self._results: dict[str, str | None] = {}
        self._slots = asyncio.Semaphore(ASSET_CONCURRENCY)
        self.fetched = 0

    async def problem(self, url: str) -> str | None:
        """Why ``url`` does not load (None: it loads, or it is beyond the limit)."""
        if url in self._results:
            return self._results[url]
        if len(self._results) >= self._limit:
            return None
        self._results[url] = None
        async with self._slots:
            res = await self._fetcher.get(url, max_body_bytes=ASSET_BODY_CAP, timed=False)
        self.fetched += 1
        problem = None if ok(res) or is_slow_not_broken(res) else why_not_ok(res)
        self._results[url] = problem
        return problem


def own_assets(page_url: str, text: str) -> list[tuple[str, str]]:
    """(kind, absolute URL) of stylesheets and scripts a page loads from its own host."""
    tree = parse_html(text)
    host = urlsplit(page_url).hostname
    found: list[tuple[str, str]] = []
    for node in tree.css("link[href]"):
        rel = (node.attributes.get("rel") or "").lower().split()
        if "stylesheet" in rel:
            found.append(("stylesheet", urljoin(page_url, node.attributes.get("href") or "")))
    for node in tree.css("script[src]"):
        found.append(("script", urljoin(page_url, node.attributes.get("src") or "")))
    return [(k, u) for k, u in found if urlsplit(u).hostname == host]


async def probe_integrity(spec: IntegrityCheck, ctx: ProbeContext) -> ProbeResult:
    """Check each page for error text, empty main content and broken assets."""
    start = time.perf_counter()
    out = Findings(ctx.site.name, spec.name, ctx.now())
    fetcher = PageFetcher(ctx, int(spec.max_body_bytes), latency_threshold=spec.latency_threshold)
    assets = AssetCache(fetcher, spec.max_assets if spec.check_assets else 0)
    markers = error_markers(ctx.site.error_markers, spec.error_markers)
    timings: list[StepTiming] = []
    failed: list[tuple[str, str]] = []
    for path in spec.pages:
        res = await fetcher.get(path)
        timings.append(StepTiming(f"page-{len(timings) + 1}", elapsed(res)))  # label: no URLs
        if is_slow_not_broken(res):
            continue  # reported as slow by report_slow
        if not isinstance(res, FetchResult) or not 200 <= res.status < 300:
            failed.append((path, why_not_ok(res)))
            continue
        problems = await _page_problems(spec, res, assets, markers)
        if problems:
            text = res.text()
            out.add(FindingKind.PAGE_CORRUPTED, f"page {path}: " + "; ".join(problems),
                    Evidence(url=res.url, status=res.status,
                             excerpt=signature_excerpt(text, markers),
                             details={"problems": str(len(problems))}))
    if failed:
        home = next((r for p, r in failed if p == "/"), None)
        home_ok = home is None and ("/" in spec.pages or ok(await fetcher.get("/", timed=False)))
        if home_ok:
            listed = "; ".join(f"{p}: {why}" for p, why in failed)
            out.add(FindingKind.PARTIAL_OUTAGE,
                    f"{len(failed)} of {len(spec.pages)} pages fail while the home page works: "
                    f"{listed}", Evidence(url=fetcher.url(failed[0][0])),
                    pages=float(len(failed)))
    fetcher.report_slow(out)
    return ProbeResult(site=ctx.site.name, check=spec.name, success=not out.items,
                       duration_s=time.perf_counter() - start, started_at=out.observed_at,
                       steps=tuple(timings),
                       measurements={"assets_checked": float(assets.fetched)},
                       findings=tuple(out.items))


async def _page_problems(spec: IntegrityCheck, res: FetchResult, assets: AssetCache,
                         markers: tuple[str, ...]) -> list[str]:
    text = res.text()
    problems: list[str] = []
    signature = error_signature(text, markers)
    if signature is not None:
        problems.append(f"shows {signature}")
    if spec.main_selector is not None:
        main = parse_html(text).css_first(spec.main_selector)
        if main is None:
            problems.append(f"no {spec.main_selector!r} element")
        elif not main.text(strip=True):
            problems.append(f"{spec.main_selector!r} is empty")
    listed = own_assets(res.url, text)
    results = await asyncio.gather(*(assets.problem(url) for _, url in listed))
    for (kind, url), problem in zip(listed, results, strict=True):
        if problem is not None:
            problems.append(f"{kind} {urlsplit(url).path} does not load ({problem})")
    return problems
