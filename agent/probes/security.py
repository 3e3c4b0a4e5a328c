"""Skimmer and defacement detection on sensitive pages (cart, checkout, product).

Collects script origins (external ``src`` and URLs in obvious inline loaders) and compares them
with the allowlist (the site's own origin always included) plus the learned baseline: the first
``learn_runs`` runs learn every origin they see, later unknown origins are ``security_breach``
(L1) naming the origin and the pages. Without a usable state directory nothing is learned and
the allowlist alone decides. Defacement text markers are ``security_breach`` too.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urljoin, urlsplit

from agent.config.schema import SecurityCheck
from agent.config.secrets import scrubbed_excerpt
from agent.httpclient import FetchResult
from agent.probes.base import ProbeContext, ProbeResult, StepTiming
from agent.probes.content import error_markers, error_signature, signature_excerpt
from agent.probes.html import parse_html
from agent.probes.pages import Findings, PageFetcher, elapsed, is_slow_not_broken, why_not_ok
from classifier import Evidence, FindingKind

_LOADER = re.compile(r"createElement\(\s*['\"]script|\.src\s*=|document\.write|\bimport\(|"
                     r"\$\.getScript|\.setAttribute\(\s*['\"]src", re.IGNORECASE)
_URL = re.compile(r"(?:https?:)?//([A-Za-z0-9.-]+(?::\d+)?)", re.IGNORECASE)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute URL (None for anything else)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1].lower()}"


def script_origins(page_url: str, text: str) -> set[str]:
    """Origins a page loads scripts from: ``<script src>`` and URLs in inline loaders."""
    tree = parse_html(text)
    found: set[str] = set()
    for node in tree.css("script"):
        src = node.attributes.get("src")
        if src:
            origin = origin_of(urljoin(page_url, src))
            if origin is not None:
                found.add(origin)
            continue
        body = node.text() or ""
        if _LOADER.search(body):
            scheme = urlsplit(page_url).scheme
            for match in _URL.finditer(body):
                url = match.group(0)
                origin = origin_of(url if not url.startswith("//") else f"{scheme}:{url}")
                if origin is not None:
                    found.add(origin)
    return found


def allowed(origin: str, allow: list[str], own: str) -> bool:
    """Whether the allowlist (``self``, ``scheme://host``, ``host``, ``*.domain``) covers it."""
    if origin == own:
        return True
    host = urlsplit(origin).hostname or ""
    for entry in allow:
        if entry == "self":
            continue
        if entry.startswith("*."):
            if host.endswith(entry[1:]) or host == entry[2:]:
                return True
        elif "://" in entry:
            if origin == entry.rstrip("/").lower():
                return True
        elif host == entry.lower():
            return True
    return False


async def probe_security(spec: SecurityCheck, ctx: ProbeContext) -> ProbeResult:
    """Find script origins nobody allowed and defacement text on the check's pages."""
    start = time.perf_counter()
    site = ctx.site
    out = Findings(site.name, spec.name, ctx.now())
    fetcher = PageFetcher(ctx, int(spec.max_body_bytes), latency_threshold=spec.latency_threshold)
    markers = error_markers(ctx.site.error_markers)
    own = origin_of(site.base_url) or site.base_url
    timings: list[StepTiming] = []
    seen: dict[str, list[str]] = {}
    complete = True
    for path in spec.pages:
        res = await fetcher.get(path)
        timings.append(StepTiming(f"page-{len(timings) + 1}", elapsed(res)))  # label: no URLs
        if is_slow_not_broken(res):
            complete = False
            continue  # reported as slow by report_slow
        if not isinstance(res, FetchResult) or not 200 <= res.status < 300:
            complete = False
            out.add(FindingKind.PARTIAL_OUTAGE,
                    f"page {path} could not be checked for scripts: {why_not_ok(res)}",
                    Evidence(url=fetcher.url(path)))
            continue
        text = res.text()
        signature = error_signature(text, markers)
        if signature is not None:
            complete = False  # an error page shows no scripts worth learning
            out.add(FindingKind.PAGE_CORRUPTED, f"page {path} shows {signature}",
                    Evidence(url=res.url, status=res.status,
                             excerpt=signature_excerpt(text, markers)))
        for origin in script_origins(res.url, text):
            seen.setdefault(origin, []).append(path)
        lowered = text.lower()
        for marker in spec.defacement_markers:
            at = lowered.find(marker.lower())
            if at >= 0:
                out.add(FindingKind.SECURITY_BREACH, f"defacement text {marker!r} on {path}",
                        Evidence(url=res.url, status=res.status,
                                 excerpt=scrubbed_excerpt(text, max(0, at - 80), 300)))
    unknown = {o: p for o, p in seen.items() if not allowed(o, spec.allow, own)}
    fetcher.report_slow(out)
    learning = await learn_while_new(ctx, spec.name, spec.learn_runs, set(unknown),
                                     complete and not out.items)
    if not learning:
        learned = (await asyncio.to_thread(ctx.baselines.origins, site.name, spec.name)
                   if ctx.baselines is not None else set())
        for origin, pages in sorted(unknown.items()):
            if origin not in learned:
                out.add(FindingKind.SECURITY_BREACH,
                        f"script from unknown origin {origin} on {', '.join(pages)}",
                        Evidence(url=fetcher.url(pages[0]),
                                 details={"origin": origin, "pages": ",".join(pages)}))
    return ProbeResult(site=site.name, check=spec.name, success=not out.items,
                       duration_s=time.perf_counter() - start, started_at=out.observed_at,
                       steps=tuple(timings),
                       measurements={"script_origins": float(len(seen))},
                       findings=tuple(out.items))


async def learn_while_new(ctx: ProbeContext, check: str, learn_runs: int, unknown: set[str],
                          complete: bool = True) -> bool:
    """Whether this run is one of the first ``learn_runs`` (a learning run reports no unknown
    origins); a run that read every page cleanly counts and learns ``unknown``, others do not."""
    store = ctx.baselines
    if store is None or learn_runs == 0:
        return False
    if not complete:
        return await asyncio.to_thread(store.runs_counted, ctx.site.name, check) < learn_runs
    before = await asyncio.to_thread(store.count_run, ctx.site.name, check)
    if before >= learn_runs:
        return False
    await asyncio.to_thread(store.learn_origins, ctx.site.name, check, unknown,
                            ctx.now().timestamp())
    return True
