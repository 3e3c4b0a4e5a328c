"""Catalog: expected products are there, enough are listed, and the count did not drop.

Counts of every passing run are kept in the baselines store; a count more than ``max_drop``
below the median of the last ``baseline_runs`` counts is ``catalog_missing``, naming how many
vanished (and is not learned). A listing page that shows a platform error or a template leak
(built-in signatures plus the site's ``error_markers``) is ``page_corrupted``, whatever it counts
(the page is broken; whether products vanished cannot be told), and that run is neither judged
nor learned. A listing that ran out of the check's budget is ``slow_response``, not judged.
"""

from __future__ import annotations

import asyncio
import time

from agent.config.schema import CatalogCheck, Counter
from agent.httpclient import FetchResult
from agent.probes.base import ProbeContext, ProbeResult, StepTiming
from agent.probes.content import (
    Page,
    count_items,
    error_markers,
    error_signature,
    signature_excerpt,
)
from agent.probes.pages import Findings, PageFetcher, elapsed, is_slow_not_broken, why_not_ok
from agent.probes.recipes import catalog_preset
from classifier import Evidence, FindingKind


def listing(spec: CatalogCheck, platform: str) -> tuple[list[str], Counter]:
    """The pages to count and how (the platform preset when ``category`` is given)."""
    if spec.category is None:
        return list(spec.pages), spec.count
    path, preset = catalog_preset(platform, spec.category)
    return [path], spec.count if "count" in spec.model_fields_set else preset


async def probe_catalog(spec: CatalogCheck, ctx: ProbeContext) -> ProbeResult:
    """Count the listed products, look for the expected ones, compare with the baseline."""
    start = time.perf_counter()
    out = Findings(ctx.site.name, spec.name, ctx.now())
    pages, counter = listing(spec, ctx.site.platform)
    fetcher = PageFetcher(ctx, int(spec.max_body_bytes), latency_threshold=spec.latency_threshold)
    markers = error_markers(ctx.site.error_markers)
    timings: list[StepTiming] = []
    total, clean, texts = 0, True, []
    for path in pages:
        res = await fetcher.get(path)
        timings.append(StepTiming(f"page-{len(timings) + 1}", elapsed(res)))  # label: no URLs
        if is_slow_not_broken(res):
            clean = False  # not counted: reported as slow by report_slow
            continue
        if not isinstance(res, FetchResult) or not 200 <= res.status < 300:
            clean = False
            out.add(FindingKind.PARTIAL_OUTAGE, f"listing {path} unreachable: {why_not_ok(res)}",
                    Evidence(url=fetcher.url(path), details={"page": path}))
            continue
        page = Page(res)
        text = page.text()
        signature = error_signature(text, markers)
        if signature is not None:  # a corrupted page's count says nothing about the catalog
            clean = False
            out.add(FindingKind.PAGE_CORRUPTED,
                    f"listing {path} shows {signature} instead of products; its count is not "
                    "judged",
                    Evidence(url=res.url, status=res.status, excerpt=signature_excerpt(text,
                                                                                        markers)))
            continue
        texts.append(text)
        total += count_items(page, counter) or 0
    for path in spec.expected_in:
        res = await fetcher.get(path, timed=False)
        if isinstance(res, FetchResult) and 200 <= res.status < 300:
            texts.append(res.text())
    fetcher.report_slow(out)
    if clean:
        _judge_expected(spec, texts, out, fetcher.url(pages[0]))
        median = await _median(ctx, spec)
        _judge_count(spec, total, median, out, fetcher.url(pages[0]))
        passed = not any(f.kind is FindingKind.CATALOG_MISSING for f in out.items)
        if ctx.baselines is not None and passed:  # the baseline learns from passing runs only
            await asyncio.to_thread(ctx.baselines.add_count, ctx.site.name, spec.name,
                                    float(total), ctx.now().timestamp())
    return ProbeResult(site=ctx.site.name, check=spec.name, success=not out.items,
                       duration_s=time.perf_counter() - start, started_at=out.observed_at,
                       steps=tuple(timings),
                       measurements={"products_listed": float(total)} if clean else {},
                       findings=tuple(out.items))


def _judge_expected(spec: CatalogCheck, texts: list[str], out: Findings, url: str) -> None:
    missing = [e for e in spec.expected if not any(e in t for t in texts)]
    if missing:
        out.add(FindingKind.CATALOG_MISSING,
                f"{len(missing)} expected product(s) missing: {', '.join(missing)}",
                Evidence(url=url, details={"missing": ",".join(missing)}),
                missing=float(len(missing)))


async def _median(ctx: ProbeContext, spec: CatalogCheck) -> float | None:
    if ctx.baselines is None:
        return None
    return await asyncio.to_thread(ctx.baselines.recent_median, ctx.site.name, spec.name,
                                   spec.baseline_runs)


def _judge_count(spec: CatalogCheck, total: int, median: float | None, out: Findings,
                 url: str) -> None:
    if total < spec.min_count:
        out.add(FindingKind.CATALOG_MISSING,
                f"{total} products listed, expected at least {spec.min_count} "
                f"({spec.min_count - total} missing)",
                Evidence(url=url, details={"count": str(total), "min_count": str(spec.min_count)}),
                count=float(total), vanished=float(spec.min_count - total))
    elif median is not None and total < median * (1 - spec.max_drop):
        out.add(FindingKind.CATALOG_MISSING,
                f"{total} products listed, {median - total:g} fewer than the recent median "
                f"{median:g}",
                Evidence(url=url, details={"count": str(total), "median": f"{median:g}"}),
                count=float(total), vanished=float(median - total))
