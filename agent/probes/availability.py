"""Availability: one request per run — status, latency, content markers, TLS expiry.

The page is down only when the request fails or exceeds its own ``request_timeout``; slower than
``latency_threshold`` (default 5s) but answered is ``slow_response``; a 200 page showing a
platform error or template leak (or one of the site's ``error_markers``) is ``page_corrupted``."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

from agent.config.schema import AvailabilityCheck
from agent.config.secrets import scrubbed_excerpt
from agent.httpclient import FetchError, FetchFailure, FetchResult
from agent.politeness import CHECK_PRIORITY, HOME_PRIORITY
from agent.probes.base import ProbeContext, ProbeResult, StepTiming, failure_kind
from agent.probes.budget import CheckRequests
from agent.probes.content import error_markers, error_signature
from agent.probes.html import MAX_HTML_DEPTH, html_depth_exceeds, parse_html
from classifier import Evidence, Finding, FindingKind

EXCERPT_CHARS = 300
SECONDS_PER_DAY = 86_400.0


async def probe_availability(spec: AvailabilityCheck, ctx: ProbeContext) -> ProbeResult:
    """Fetch the check's page once and report what a shopper would notice."""
    site = ctx.site
    started_at = ctx.now()
    start = time.perf_counter()
    url = site.base_url + spec.path
    requests = CheckRequests(ctx, max_body_bytes=int(spec.max_body_bytes),
                             max_redirects=spec.max_redirects,
                             priority=HOME_PRIORITY if spec.role == "home" else CHECK_PRIORITY)
    outcome = await requests.fetch(url, where=f"page {spec.path}", method=spec.method,
                                   headers=spec.headers)
    builder = _Findings(site.name, spec.name, started_at)
    measurements: dict[str, float] = {}
    steps: tuple[StepTiming, ...]
    if isinstance(outcome, FetchError):
        _on_fetch_error(builder, spec, outcome)
        steps = (StepTiming("total", outcome.elapsed_s),)
    else:
        measurements = _measure(outcome)
        steps = (StepTiming("response", outcome.response_s), StepTiming("total", outcome.total_s))
        _judge_response(builder, spec, ctx, outcome)
    return ProbeResult(site=site.name, check=spec.name, success=not builder.findings,
                       duration_s=time.perf_counter() - start, started_at=started_at,
                       steps=steps, measurements=measurements, findings=tuple(builder.findings))


class _Findings:
    def __init__(self, site: str, check: str, observed_at: datetime) -> None:
        self.site, self.check, self.observed_at = site, check, observed_at
        self.findings: list[Finding] = []

    def add(self, kind: FindingKind, summary: str, evidence: Evidence,
            **facts: float) -> None:
        self.findings.append(Finding(self.site, self.check, kind, summary,
                                     self.observed_at, evidence, facts))


def _on_fetch_error(out: _Findings, spec: AvailabilityCheck, err: FetchError) -> None:
    evidence = Evidence(url=err.url, timings={"total": err.elapsed_s},
                        details={"failure": err.failure.value})
    if err.failure is FetchFailure.TLS_EXPIRED:
        out.add(FindingKind.TLS_EXPIRING, f"certificate has expired: {err.message}", evidence,
                days_left=0.0)
        return
    where = "home page" if spec.role == "home" else f"page {spec.path}"
    out.add(failure_kind(spec), f"{where} unreachable: {err.message}", evidence)


def _measure(res: FetchResult) -> dict[str, float]:
    m = {"http_status": float(res.status), "body_bytes": float(len(res.body)),
         "redirects": float(len(res.redirects)), "response_seconds": res.response_s}
    if res.cert_not_after is not None:
        m["tls_cert_expiry_timestamp_seconds"] = res.cert_not_after
    return m


def _judge_response(out: _Findings, spec: AvailabilityCheck, ctx: ProbeContext,
                    res: FetchResult) -> None:
    where = "home page" if spec.role == "home" else f"page {spec.path}"
    text = res.text() if res.body else ""

    def evidence(excerpt: str | None = None, **details: str) -> Evidence:
        return Evidence(url=res.url, status=res.status, excerpt=excerpt,
                        timings={"response": res.response_s, "total": res.total_s},
                        details=details)

    if res.status not in spec.expect_status:
        expected = ",".join(str(s) for s in spec.expect_status)
        out.add(failure_kind(spec), f"{where} answered HTTP {res.status} (expected {expected})",
                evidence(scrubbed_excerpt(text, 0, EXCERPT_CHARS)))
    elif spec.method != "HEAD":
        _judge_content(out, spec, res, text, where, evidence,
                       error_markers(ctx.site.error_markers))

    if spec.latency_threshold is not None and res.total_s > spec.latency_threshold:
        out.add(FindingKind.SLOW_RESPONSE,
                f"{where} took {res.total_s:.2f}s (threshold {spec.latency_threshold:g}s)",
                evidence(), seconds=res.total_s, threshold=spec.latency_threshold)

    if res.cert_not_after is not None:
        days_left = (res.cert_not_after - ctx.now().timestamp()) / SECONDS_PER_DAY
        if days_left <= ctx.site.tls.warn_days:
            out.add(FindingKind.TLS_EXPIRING,
                    f"certificate expires in {days_left:.1f} days",
                    evidence(not_after=str(int(res.cert_not_after))), days_left=days_left)


def _judge_content(out: _Findings, spec: AvailabilityCheck, res: FetchResult, text: str,
                   where: str, evidence: Callable[..., Evidence],
                   site_markers: tuple[str, ...]) -> None:
    problems: list[str] = []
    problems += [f"missing text {s!r}" for s in spec.body_contains if s not in text]
    problems += [f"unwanted text {s!r}" for s in spec.body_not_contains if s in text]
    problems += [f"no match for /{p}/" for p in spec.body_matches if not re.search(p, text)]
    problems += [f"unwanted match /{p}/" for p in spec.body_not_matches if re.search(p, text)]
    signature = error_signature(text, site_markers) if 200 <= res.status < 300 else None
    if signature is not None:
        problems.append(f"shows {signature}")
    if spec.selector is not None:
        if html_depth_exceeds(text):
            problems.append(f"HTML nested deeper than {MAX_HTML_DEPTH} levels; selector "
                            f"{spec.selector!r} not evaluated")
        elif parse_html(text).css_first(spec.selector) is None:
            problems.append(f"no element matches selector {spec.selector!r}")
    if problems:
        if res.truncated:
            problems.append(f"body truncated at {len(res.body)} bytes")
        excerpt = _excerpt_around(text, spec.body_not_contains)
        out.add(FindingKind.PAGE_CORRUPTED, f"{where}: " + "; ".join(problems),
                evidence(excerpt, problems=str(len(problems))))


def _excerpt_around(text: str, needles: list[str]) -> str | None:
    for needle in needles:
        at = text.find(needle)
        if at >= 0:
            lo = max(0, at - 80)
            return scrubbed_excerpt(text, lo, EXCERPT_CHARS)
    return scrubbed_excerpt(text, 0, EXCERPT_CHARS)
