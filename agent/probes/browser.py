"""``type: browser``: a shopper's journey in the shared headless Chromium.

The journey runs in a fresh context of the one shared browser (``agent.browser.runtime``) under
the check's deadline; a browser that cannot be started is the agent's problem, not the shop's
(``agent_offline``: no ticket for the client, one line in the agent's log).
"""

from __future__ import annotations

import contextlib
import logging
import time

from agent.config.schema import BrowserCheck
from agent.politeness import CHECK_PRIORITY
from agent.probes.base import ProbeContext, ProbeResult
from classifier import Evidence, Finding, FindingKind

log = logging.getLogger(__name__)


async def probe_browser(spec: BrowserCheck, ctx: ProbeContext) -> ProbeResult:
    """Run the journey; findings for what the browser saw (see agent/browser/journey.py)."""
    from playwright.async_api import Error as PlaywrightError

    from agent.browser.journey import run_journey
    from agent.browser.runtime import BrowserUnavailable, shared_runtime

    start = time.perf_counter()
    started_at = ctx.now()
    site = ctx.site
    gate = ctx.clients.politeness.gate(site.name, site.max_in_flight)
    try:
        # one of the site's request slots for the whole journey: a browser shares the
        # per-site politeness limit of the HTTP checks (waiting for it is not the shop's time)
        async with contextlib.AsyncExitStack() as held:
            async with ctx.clock.paused():  # the wait stops the run's deadline
                waited = await held.enter_async_context(gate.slot(CHECK_PRIORITY))
            deadline = start + waited + ctx.timeout
            async with shared_runtime().journey_context() as context:
                run = await run_journey(spec, ctx, context, deadline)
    except (BrowserUnavailable, PlaywrightError) as exc:  # the browser's fault, not the shop's
        log.error("%s/%s: %s", ctx.site.name, spec.name, exc)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finding = Finding(ctx.site.name, spec.name, FindingKind.AGENT_OFFLINE,
                          f"browser unavailable: {text}",
                          started_at, Evidence(url=ctx.site.base_url + spec.first_path(),
                                               details={"failure": "browser_unavailable"}))
        return ProbeResult(site=ctx.site.name, check=spec.name, success=False,
                           duration_s=time.perf_counter() - start, started_at=started_at,
                           findings=(finding,))
    return ProbeResult(site=run.site, check=run.check, success=not run.findings,
                       duration_s=time.perf_counter() - start, started_at=run.started_at,
                       steps=tuple(run.timings), measurements=run.measurements,
                       findings=tuple(run.findings))
