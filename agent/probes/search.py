"""Search and filters: known queries (or filter URLs) return at least N results.

Results are counted like catalog listings. Too few results is ``search_broken`` (``filter_broken``
for a filter check); a results page that shows a platform error or a template leak (or one of
the site's ``error_markers``) is ``page_corrupted`` whatever it counts; a query that ran out of
the check's budget is ``slow_response``.
A search answered by a redirect to a single product (WooCommerce does this) counts as 1 result.
"""

from __future__ import annotations

import time

from agent.config.schema import JSON_LD_COUNTER, Counter, SearchCheck
from agent.config.secrets import scrubbed_excerpt
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
from agent.probes.recipes import search_preset
from classifier import Evidence, FindingKind


async def probe_search(spec: SearchCheck, ctx: ProbeContext) -> ProbeResult:
    """Run each known query and count its results."""
    start = time.perf_counter()
    kind = spec.failure_kind()
    out = Findings(ctx.site.name, spec.name, ctx.now())
    fetcher = PageFetcher(ctx, int(spec.max_body_bytes), latency_threshold=spec.latency_threshold)
    markers = error_markers(ctx.site.error_markers)
    timings: list[StepTiming] = []
    for i, query in enumerate(spec.queries):
        counter: Counter = spec.count or JSON_LD_COUNTER
        path = query.path
        if query.term is not None:
            path, preset = search_preset(ctx.site.platform, query.term)
            counter = spec.count or preset
        assert path is not None  # the config requires path or term
        res = await fetcher.get(path)
        timings.append(StepTiming(f"query-{i + 1}", elapsed(res)))
        if is_slow_not_broken(res):
            continue  # reported as slow by report_slow
        if not isinstance(res, FetchResult) or not 200 <= res.status < 300:
            out.add(kind, f"{path} failed: {why_not_ok(res)}",
                    Evidence(url=fetcher.url(path), status=getattr(res, "status", None)))
            continue
        page = Page(res)
        text = page.text()
        signature = error_signature(text, markers)
        if signature is not None:  # a corrupted page's count says nothing about search
            out.add(FindingKind.PAGE_CORRUPTED,
                    f"{path} shows {signature} instead of results; its count is not judged",
                    Evidence(url=res.url, status=res.status,
                             excerpt=signature_excerpt(text, markers)))
            continue
        got = count_items(page, counter) or 0
        if got == 0 and res.redirects:
            got = 1
        evidence = Evidence(url=res.url, status=res.status, excerpt=scrubbed_excerpt(text),
                            details={"results": str(got)})
        if got < query.min_results:
            out.add(kind, f"{path} returned {got} results, expected at least "
                          f"{query.min_results}", evidence, results=float(got))
        elif query.expected is not None and query.expected not in text:
            out.add(kind, f"{path}: {query.expected} is not among the {got} results", evidence)
    fetcher.report_slow(out)
    return ProbeResult(site=ctx.site.name, check=spec.name, success=not out.items,
                       duration_s=time.perf_counter() - start, started_at=out.observed_at,
                       steps=tuple(timings), findings=tuple(out.items))
