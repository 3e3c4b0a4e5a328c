"""Checkout (and small-feature) checks: the step engine, then payment and shipping methods.

No payment method offered → ``payment_unavailable``; an expected method missing while others
remain, or no shipping method while the cart works → ``business_logic_degraded``. The steps
stop at the shipping/payment-method stage: no order is ever placed.
"""

from __future__ import annotations

import time

from agent.config.schema import MethodList, StepsCheck
from agent.probes.base import ProbeContext, ProbeResult
from agent.probes.content import Page, css_values, json_path_values, scalar_text
from agent.probes.recipes import recipe_flow
from agent.probes.steps import StepRun, judge_timing, run_steps
from classifier import Evidence, FindingKind


async def probe_steps(spec: StepsCheck, ctx: ProbeContext) -> ProbeResult:
    """Run the check's steps (or its platform recipe) and judge the methods offered."""
    start = time.perf_counter()
    steps, payment, shipping = spec.steps, spec.payment, spec.shipping
    if spec.recipe is not None:
        flow = recipe_flow(ctx.site.platform, spec.recipe)
        steps, payment, shipping = flow.steps, payment or flow.payment, shipping or flow.shipping
    run = await run_steps(spec, steps, ctx)
    judge_timing(run, spec)
    last = steps[-1].name
    if payment is not None:
        _judge_methods(run, payment, last, "payment", FindingKind.PAYMENT_UNAVAILABLE)
    if shipping is not None:
        _judge_methods(run, shipping, last, "shipping", FindingKind.BUSINESS_LOGIC_DEGRADED)
    measurements: dict[str, float] = {}
    if run.jar is not None and run.jar.ignored:
        measurements["cookies_ignored"] = float(run.jar.ignored)
    if run.responses:
        measurements["http_status"] = float(list(run.responses.values())[-1].res.status)
    return ProbeResult(site=run.site, check=run.check, success=not run.findings,
                       duration_s=time.perf_counter() - start, started_at=run.started_at,
                       steps=tuple(run.timings), measurements=measurements,
                       findings=tuple(run.findings))


def offered_methods(methods: MethodList, page: Page) -> list[str]:
    """The method codes (or titles) a response lists."""
    if methods.css is not None:
        return css_values(page.tree(), methods.css, methods.attribute)
    doc = page.json()
    if doc is None or methods.json_path is None:
        return []
    return [scalar_text(v) for v in json_path_values(doc, methods.json_path) if v is not None]


def _judge_methods(run: StepRun, methods: MethodList, last: str, what: str,
                   none_kind: FindingKind) -> None:
    step = methods.step or last
    page = run.responses.get(step)
    if page is None or step in run.failed:
        return  # the step did not run or already failed: that is the finding
    offered = offered_methods(methods, page)
    missing = [m for m in methods.expected if m not in offered]
    if offered and not missing:
        return  # the usual case: no evidence to build
    res = page.res
    evidence = Evidence(url=res.url, status=res.status, timings={step: res.total_s},
                        details={"step": step, "offered": ",".join(offered) or "none"})
    if not offered:
        run.add(none_kind, f"checkout offers no {what} method (step '{step}')", evidence)
    else:
        run.add(FindingKind.BUSINESS_LOGIC_DEGRADED,
                f"{what} method {', '.join(missing)} missing; offered: {', '.join(offered)}",
                evidence)
