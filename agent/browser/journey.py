"""One browser journey: run its steps in a fresh context and judge what the browser saw.

Per step: the action (goto, click, fill, select, press), the wait, the expectations, the
extracts. What fails a step is reported as the step's kind (``checkout_broken`` by default):
an action or wait that fails, an expectation missed, and, unless ``no_js_errors: false``,
uncaught page errors and failed same-origin script or stylesheet requests during the step.
Across the journey: every script the page loads (network level, so also scripts that other
scripts inject) is checked against the allowlist and learned origins → ``security_breach``,
with the chain of scripts that loaded it; LCP, CLS and INP of each page and each step's time
against the thresholds → ``slow_response``. The failing step's screenshot and its console and
network log are saved under ``STATE_DIR/evidence/``. Order-placing requests are aborted and
order-placing clicks refused (``agent.browser.guard``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.browser.guard import (
    DESCRIBE_ELEMENT_JS,
    ORDER_URL_FILTER,
    click_refusal,
    places_order,
)
from agent.browser.identity import send_identity
from agent.config.schema import BrowserCheck, BrowserExpect, BrowserStep
from agent.probes.base import ProbeContext, StepTiming
from agent.probes.security import allowed, learn_while_new, origin_of
from agent.probes.steps import render
from classifier import Evidence, Finding, FindingKind

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, CDPSession, Page, Request, Route

log = logging.getLogger(__name__)

LOG_LIMIT = 200
"""Console and network entries kept per step for the evidence log."""
SCREENSHOT_TIMEOUT_S = 5.0
EVIDENCE_DIR = "evidence"

VITALS_JS = """(() => {
  const v = window.__storewatchVitals = {lcp: null, cls: 0, inp: null};
  const watch = (type, fn, extra) => {
    try { new PerformanceObserver(l => l.getEntries().forEach(fn))
            .observe(Object.assign({type: type, buffered: true}, extra || {})); } catch (e) {}
  };
  watch('largest-contentful-paint', e => { v.lcp = e.startTime; });
  watch('layout-shift', e => { if (!e.hadRecentInput) v.cls += e.value; });
  watch('event', e => { if (e.interactionId) v.inp = Math.max(v.inp || 0, e.duration); },
        {durationThreshold: 16});
})();"""
"""Installed in every document: the page's own Core Web Vitals, read after each step."""


@dataclass
class _Net:
    """One request the page made, as the log shows it."""

    method: str
    url: str
    resource: str
    status: int | None = None
    failure: str | None = None


@dataclass
class Recorder:
    """Everything the page reports: errors, console, requests, scripts and who loaded them."""

    own_origin: str
    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    network: list[_Net] = field(default_factory=list)
    asset_failures: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)
    """Script URL → the URL of the page or script that caused it to load."""
    blocked: list[str] = field(default_factory=list)

    def mark(self) -> tuple[int, int, int, int]:
        """Positions to tell what happened during one step."""
        return (len(self.page_errors), len(self.asset_failures), len(self.console),
                len(self.network))

    def attach(self, page: Page) -> None:
        """Listen to ``page``'s events."""
        page.on("pageerror", lambda exc: self.page_errors.append(_one_line(str(exc))))
        page.on("console", lambda msg: self._keep(
            self.console, f"{msg.type}: {_one_line(msg.text)}"))
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", lambda res: self._status(res.request, res.status))

    def _keep(self, into: list[Any], item: Any) -> None:
        if len(into) < LOG_LIMIT * 10:
            into.append(item)

    def _request(self, request: Request) -> None:
        self._keep(self.network, _Net(request.method, request.url, request.resource_type))
        if request.resource_type == "script":
            self.scripts.setdefault(request.url, request.frame.url if request.frame else "")

    def _entry(self, request: Request) -> _Net | None:
        for net in reversed(self.network):
            if net.url == request.url and net.status is None and net.failure is None:
                return net
        return None

    def _failed(self, request: Request) -> None:
        net = self._entry(request)
        reason = request.failure or "failed"
        if net is not None:
            net.failure = reason
        self._asset(request, reason)

    def _status(self, request: Request, status: int) -> None:
        net = self._entry(request)
        if net is not None:
            net.status = status
        if status >= 400:
            self._asset(request, f"HTTP {status}")

    def _asset(self, request: Request, why: str) -> None:
        if request.resource_type in ("script", "stylesheet") and \
                origin_of(request.url) == self.own_origin:
            self._keep(self.asset_failures, f"{request.resource_type} {request.url}: {why}")

    def initiated(self, url: str, by: str) -> None:
        """CDP told who caused ``url`` to load (a more precise initiator than the frame)."""
        if by:
            self.scripts[url] = by

    def chain(self, url: str) -> list[str]:
        """``url``, the script that loaded it, the one that loaded that, ... up to the page."""
        out = [url]
        while len(out) < 10:
            parent = self.scripts.get(out[-1])
            if not parent or parent in out:
                break
            out.append(parent)
            if parent not in self.scripts:
                break
        return out

    def log_since(self, mark: tuple[int, int, int, int]) -> dict[str, Any]:
        """The console and network entries since ``mark`` (for the evidence file)."""
        return {
            "page_errors": self.page_errors[mark[0]:][:LOG_LIMIT],
            "asset_failures": self.asset_failures[mark[1]:][:LOG_LIMIT],
            "console": self.console[mark[2]:][:LOG_LIMIT],
            "network": [
                {"method": n.method, "url": n.url, "type": n.resource, "status": n.status,
                 "failure": n.failure} for n in self.network[mark[3]:][:LOG_LIMIT]],
            "blocked_order_requests": self.blocked[:LOG_LIMIT],
        }


@dataclass
class JourneyRun:
    """What one journey saw: findings, step timings, measurements."""

    site: str
    check: str
    started_at: datetime
    findings: list[Finding] = field(default_factory=list)
    timings: list[StepTiming] = field(default_factory=list)
    measurements: dict[str, float] = field(default_factory=dict)

    def add(self, kind: FindingKind, summary: str, evidence: Evidence) -> None:
        """Record a finding of this run."""
        self.findings.append(Finding(self.site, self.check, kind, summary, self.started_at,
                                     evidence))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _ms(seconds: float) -> float:
    return seconds * 1000.0


async def run_journey(spec: BrowserCheck, ctx: ProbeContext, context: BrowserContext,
                      deadline: float) -> JourneyRun:
    """Run ``spec``'s steps in ``context`` (fresh, owned by the caller) until ``deadline``."""
    site = ctx.site
    own = origin_of(site.base_url) or site.base_url
    run = JourneyRun(site.name, spec.name, ctx.now())
    rec = Recorder(own)
    variables = dict(spec.vars)

    async def guard(route: Route) -> None:
        request = route.request
        if places_order(request.method, request.url):
            rec.blocked.append(f"{request.method} {request.url}")
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    await context.route(ORDER_URL_FILTER, guard)
    await send_identity(context, site.base_url, ctx.clients.identity)  # runs before the guard
    await context.add_init_script(VITALS_JS)
    page = await context.new_page()
    rec.attach(page)
    await _watch_initiators(context, page, rec)
    vitals: dict[str, dict[str, float]] = {}
    for step in spec.steps:
        kind = step.kind or spec.kind
        mark = rec.mark()
        remaining = deadline - time.perf_counter()
        if remaining <= 0.2:
            run.add(kind, f"step '{step.name}': no time left of the check's deadline",
                    Evidence(url=page.url, details={"step": step.name}))
            break
        start = time.perf_counter()
        problems = await _act(page, step, site.base_url, variables, remaining,
                              ctx.request_limit(), rec)
        elapsed = time.perf_counter() - start
        run.timings.append(StepTiming(step.name, elapsed))
        if not problems:
            problems = await _judge(page, step.expect)
        if not problems:
            problems = await _extract(page, step, variables)
        if step.expect.no_js_errors:
            problems += [f"uncaught page error: {e}" for e in rec.page_errors[mark[0]:][:3]]
            problems += [f"failed {e}" for e in rec.asset_failures[mark[1]:][:3]]
        seen = await _vitals(page)
        if seen is not None:
            vitals[page.url] = seen
        if problems:
            evidence = await _save_evidence(ctx, spec, step, page, rec, mark, run.started_at)
            run.add(kind, f"step '{step.name}': " + "; ".join(problems[:4]),
                    Evidence(url=page.url, timings={step.name: elapsed},
                             details={"step": step.name, **evidence}))
            if not step.continue_on_failure:
                break
            continue
        limit = step.max_seconds or spec.thresholds.step
        if elapsed > limit:
            run.add(FindingKind.SLOW_RESPONSE,
                    f"step '{step.name}' took {elapsed:.1f}s (threshold {limit:g}s)",
                    Evidence(url=page.url, timings={step.name: elapsed},
                             details={"step": step.name, "metric": "step_seconds"}))
    _judge_vitals(run, spec, vitals)
    await _judge_scripts(run, spec, ctx, rec)
    bare = [i for i, f in enumerate(run.findings) if "screenshot" not in f.evidence.details]
    if bare:  # slow or injected-script findings: a picture of where the journey ended
        saved = await _save_evidence(ctx, spec, spec.steps[-1], page, rec, (0, 0, 0, 0),
                                     run.started_at, suffix="end")
        for i in bare:
            f = run.findings[i]
            run.findings[i] = replace(f, evidence=replace(
                f.evidence, details={**f.evidence.details, **saved}))
    run.measurements["page_errors"] = float(len(rec.page_errors))
    run.measurements["scripts"] = float(len(rec.scripts))
    run.measurements["blocked_order_requests"] = float(len(rec.blocked))
    return run


async def _watch_initiators(context: BrowserContext, page: Page, rec: Recorder) -> None:
    """Who caused each script to load (CDP ``Network.requestWillBeSent`` initiators)."""
    try:
        session: CDPSession = await context.new_cdp_session(page)
        await session.send("Network.enable")
    except Exception as exc:  # evidence only: the journey runs without it
        log.debug("no CDP initiators: %s", exc)
        return

    def sent(params: dict[str, Any]) -> None:
        if params.get("type") != "Script":
            return
        initiator = params.get("initiator") or {}
        by = initiator.get("url") or ""
        frames = ((initiator.get("stack") or {}).get("callFrames") or [])
        if frames:
            by = frames[0].get("url") or by
        rec.initiated(params.get("request", {}).get("url", ""), by)

    session.on("Network.requestWillBeSent", sent)


async def _act(page: Page, step: BrowserStep, base_url: str, variables: dict[str, str],
               remaining: float, request_limit: float, rec: Recorder) -> list[str]:
    from playwright.async_api import Error as PlaywrightError

    budget_ms = max(200.0, _ms(min(remaining, request_limit)) - 200.0)
    try:
        if step.goto is not None:
            url = base_url + render(step.goto, variables)
            response = await page.goto(url, timeout=budget_ms, wait_until="load")
            if response is not None and response.status >= 400:
                return [f"HTTP {response.status} for {url}"]
        elif step.click is not None:
            target = page.locator(step.click).first
            await target.wait_for(state="visible", timeout=min(budget_ms, 10_000))
            why = click_refusal(await target.evaluate(DESCRIBE_ELEMENT_JS))
            if why is not None:
                return [f"refused to click {step.click!r}: {why} (storewatch never places "
                        "orders; fix the journey)"]
            await target.click(timeout=budget_ms)
        elif step.fill is not None:
            await page.locator(step.fill.selector).first.fill(
                render(step.fill.value, variables), timeout=budget_ms)
        elif step.select is not None:
            await page.locator(step.select.selector).first.select_option(
                render(step.select.value, variables), timeout=budget_ms)
        elif step.press is not None:
            await page.locator(step.press.selector).first.press(step.press.value,
                                                                timeout=budget_ms)
        if step.wait_for is not None:
            wait = step.wait_for
            wait_ms = min(budget_ms, _ms(wait.timeout))
            if wait.selector is not None:
                await page.locator(wait.selector).first.wait_for(state="visible",
                                                                 timeout=wait_ms)
            elif wait.text is not None:
                await page.get_by_text(wait.text).first.wait_for(state="visible",
                                                                 timeout=wait_ms)
            elif wait.url is not None:
                await page.wait_for_url(re.compile(wait.url), timeout=wait_ms)
            else:
                await page.wait_for_load_state("networkidle", timeout=wait_ms)
    except PlaywrightError as exc:
        return [_describe_error(step, exc)]
    if rec.blocked:
        log.info("blocked %d order-placing request(s): %s", len(rec.blocked), rec.blocked[-1])
    return []


def _describe_error(step: BrowserStep, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Timeout" in type(exc).__name__ or "Timeout" in text:
        if step.wait_for is not None:
            w = step.wait_for
            what = (f"selector {w.selector!r}" if w.selector else f"text {w.text!r}" if w.text
                    else f"URL /{w.url}/" if w.url else "network idle")
            return f"timed out waiting for {what}"
        return f"timed out: {_one_line(text, 160)}"
    return _one_line(text, 200)


async def _judge(page: Page, expect: BrowserExpect) -> list[str]:
    from playwright.async_api import Error as PlaywrightError

    problems: list[str] = []
    try:
        if expect.url is not None and not re.search(expect.url, page.url):
            problems.append(f"URL {page.url} does not match /{expect.url}/")
        if expect.text or expect.not_text:
            body = await page.locator("body").inner_text(timeout=5000)
            problems += [f"missing text {t!r}" for t in expect.text if t not in body]
            problems += [f"unwanted text {t!r}" for t in expect.not_text if t in body]
        for selector in expect.selector:
            if await page.locator(selector).count() == 0:
                problems.append(f"no element matches {selector!r}")
        for count in expect.count:
            got = await page.locator(count.selector).count()
            if got < count.min or (count.max is not None and got > count.max):
                wanted = f"at least {count.min}" + (f", at most {count.max}"
                                                    if count.max is not None else "")
                problems.append(f"{got} elements match {count.selector!r}, expected {wanted}")
    except PlaywrightError as exc:
        problems.append(_one_line(str(exc), 200))
    return problems


async def _extract(page: Page, step: BrowserStep, variables: dict[str, str]) -> list[str]:
    from playwright.async_api import Error as PlaywrightError

    problems = []
    for name, ex in step.extract.items():
        value: str | None = None
        try:
            node = page.locator(ex.selector).first
            if await node.count():
                value = (await node.get_attribute(ex.attribute, timeout=2000) if ex.attribute
                         else (await node.inner_text(timeout=2000)).strip())
        except PlaywrightError:
            value = None
        if not value:
            problems.append(f"could not extract '{name}' ({ex.selector!r}"
                            + (f" @{ex.attribute})" if ex.attribute else ")"))
        else:
            variables[name] = value
    return problems


async def _vitals(page: Page) -> dict[str, float] | None:
    try:
        raw = await asyncio.wait_for(page.evaluate("() => window.__storewatchVitals || null"),
                                     2.0)
    except Exception:
        return None
    if not isinstance(raw, dict):
        return None
    return {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}


def _judge_vitals(run: JourneyRun, spec: BrowserCheck,
                  vitals: dict[str, dict[str, float]]) -> None:
    limits = spec.thresholds
    worst: dict[str, tuple[float, str]] = {}
    for url, values in vitals.items():
        for metric, value in values.items():
            if value > worst.get(metric, (-1.0, ""))[0]:
                worst[metric] = (value, url)
    for metric, (value, _url) in worst.items():
        shown = value / 1000.0 if metric in ("lcp", "inp") else value
        run.measurements[f"{metric}_seconds" if metric != "cls" else "cls"] = shown
    checks = (("lcp", "Largest Contentful Paint", limits.lcp, "s"),
              ("inp", "Interaction to Next Paint", limits.inp, "s"),
              ("cls", "Cumulative Layout Shift", limits.cls, ""))
    for metric, title, limit, unit in checks:
        if metric not in worst:
            continue
        value, url = worst[metric]
        shown = value / 1000.0 if unit else value
        if shown > limit:
            run.add(FindingKind.SLOW_RESPONSE,
                    f"{title} {shown:.2f}{unit} on {url} (threshold {limit:g}{unit})",
                    Evidence(url=url, details={"metric": metric, "value": f"{shown:.3f}"}))


async def _judge_scripts(run: JourneyRun, spec: BrowserCheck, ctx: ProbeContext,
                         rec: Recorder) -> None:
    seen: dict[str, str] = {}
    for url in rec.scripts:
        origin = origin_of(url)
        if origin is not None:
            seen.setdefault(origin, url)
    unknown = {o: u for o, u in seen.items() if not allowed(o, spec.allow, rec.own_origin)}
    if await learn_while_new(ctx, spec.name, spec.learn_runs, set(unknown), not run.findings):
        return
    learned = (await asyncio.to_thread(ctx.baselines.origins, ctx.site.name, spec.name)
               if ctx.baselines is not None else set())
    for origin, url in sorted(unknown.items()):
        if origin in learned:
            continue
        chain = rec.chain(url)
        run.add(FindingKind.SECURITY_BREACH,
                f"script from unknown origin {origin} loaded at run time"
                + (f" by {chain[1]}" if len(chain) > 1 else ""),
                Evidence(url=url, details={"origin": origin, "script": url,
                                           "initiator_chain": " <- ".join(chain)}))


async def _save_evidence(ctx: ProbeContext, spec: BrowserCheck, step: BrowserStep, page: Page,
                         rec: Recorder, mark: tuple[int, int, int, int],
                         started_at: datetime, suffix: str = "") -> dict[str, str]:
    """Screenshot and console/network log of the failing step (paths for the evidence)."""
    if ctx.baselines is None:
        return {}
    folder = Path(ctx.baselines.path).parent / EVIDENCE_DIR / ctx.site.name
    stem = f"{spec.name}-{started_at.strftime('%Y%m%dT%H%M%S')}-{suffix or step.name}"
    out: dict[str, str] = {}
    try:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        shot = folder / f"{stem}.png"
        await page.screenshot(path=str(shot), timeout=_ms(SCREENSHOT_TIMEOUT_S))
        out["screenshot"] = str(shot)
    except Exception as exc:
        log.warning("no screenshot for %s/%s: %s", ctx.site.name, spec.name, _one_line(str(exc)))
    try:
        log_file = folder / f"{stem}.json"
        doc = {"url": page.url, "step": step.name, **rec.log_since(mark)}
        await asyncio.to_thread(log_file.write_text, json.dumps(doc, indent=1))
        out["browser_log"] = str(log_file)
    except OSError as exc:
        log.warning("no browser log for %s/%s: %s", ctx.site.name, spec.name, exc)
    return out
