"""The step engine: a list of HTTP steps run with one cookie jar, variables flowing between them.

Each step renders ``{{ var }}`` into its request, sends it through the shared client stack
(deadline, body cap, bounded redirects), checks its assertions, then captures variables with its
extractors. The first failing step ends the run unless it says ``continue_on_failure``. A failure
is reported as the step's finding kind, except that a 2xx page showing a platform's error page
or a template leak instead of its content is ``page_corrupted`` (the page is broken, not the
step's function). A step is broken only when it fails or exceeds its own request timeout: a step
slower than its latency threshold, or a run whose budget ran out because earlier steps were
slow, is ``slow_response`` (``judge_timing``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from agent.config.schema import Expect, Extractor, Site, Step, StepsCheck
from agent.config.secrets import scrubbed_excerpt
from agent.cookies import RunCookies
from agent.httpclient import FetchError, FetchFailure
from agent.probes.base import ProbeContext, StepTiming
from agent.probes.budget import CheckRequests, slow_summary
from agent.probes.content import (
    Page,
    count_items,
    error_markers,
    error_signature,
    json_path_values,
    scalar_text,
    signature_excerpt,
)
from classifier import Evidence, Finding, FindingKind

EXCERPT_CHARS = 300
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class StepRun:
    """What one run of a step list saw: responses (read once) by step, timings, variables,
    findings."""

    site: str
    check: str
    started_at: datetime
    responses: dict[str, Page] = field(default_factory=dict)
    timings: list[StepTiming] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    slow: list[tuple[str, float, float]] = field(default_factory=list)
    """(step, seconds, threshold) of every step slower than its latency threshold."""
    out_of_budget: FetchError | None = None
    """The request the check's budget ran out on (the run stopped there, slow not broken)."""
    requests: CheckRequests | None = None
    jar: RunCookies | None = None

    def add(self, kind: FindingKind, summary: str, evidence: Evidence,
            **facts: float) -> None:
        """Record a finding of this run."""
        self.findings.append(Finding(self.site, self.check, kind, summary, self.started_at,
                                     evidence, facts))


def render(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with every ``{{ name }}`` replaced (names are checked by the config)."""
    if "{{" not in text:
        return text  # most header, path and field values are literal
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), ""), text)


def _render_json(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list):
        return [_render_json(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _render_json(v, variables) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


async def run_steps(spec: StepsCheck, steps: list[Step], ctx: ProbeContext) -> StepRun:
    """Run ``steps`` in order with one cookie jar; never raises for the storefront's faults."""
    site = ctx.site
    run = StepRun(site.name, spec.name, ctx.now(), variables=dict(spec.vars))
    jar = RunCookies()
    requests = CheckRequests(ctx, max_body_bytes=int(spec.max_body_bytes),
                             max_redirects=spec.max_redirects)
    run.requests = requests
    run.jar = jar
    markers = error_markers(site.error_markers)
    previous: Page | None = None
    for step in steps:
        kind = step.kind or spec.kind
        request = _build_request(step, site, run.variables, previous)
        if isinstance(request, str):
            run.add(kind, f"step '{step.name}': {request}",
                    Evidence(url=previous.res.url if previous else None,
                             details={"step": step.name}))
            run.failed.add(step.name)
            if step.continue_on_failure:
                continue
            break
        outcome = await requests.fetch(request.url, where=f"step '{step.name}'",
                                       method=request.method, headers=request.headers,
                                       content=request.content, cookies=jar)
        if isinstance(outcome, FetchError):
            run.timings.append(StepTiming(step.name, outcome.elapsed_s))
            if outcome.failure is FetchFailure.BUDGET:
                run.out_of_budget = outcome  # slow, not broken: judged in finish_timing
                break
            run.add(kind, f"step '{step.name}': {outcome.message}",
                    Evidence(url=outcome.url, timings={step.name: outcome.elapsed_s},
                             details={"step": step.name, "failure": outcome.failure.value,
                                      **jar.flood_evidence()}))
            run.failed.add(step.name)
            if step.continue_on_failure:
                continue
            break
        run.timings.append(StepTiming(step.name, outcome.total_s))
        threshold = step.latency_threshold or spec.latency_threshold
        if threshold is not None and outcome.total_s > threshold:
            run.slow.append((f"step '{step.name}'", outcome.total_s, threshold))
        page = Page(outcome)
        run.responses[step.name] = page
        previous = page
        problems, status_ok = _judge(step.expect, page)
        if not problems:
            problems = _extract(step.extract, page, jar, run.variables)
        if problems:
            _report_step(run, step.name, kind, page, problems, status_ok, markers, jar)
            run.failed.add(step.name)
            if not step.continue_on_failure:
                break
    return run


def judge_timing(run: StepRun, spec: StepsCheck) -> None:
    """The run's ``slow_response`` (slow steps, a used-up budget) and, for a checkout slower
    than ``degraded_after`` whose steps all worked, ``business_logic_degraded``."""
    if run.slow or run.out_of_budget is not None:
        parts = [slow_summary(run.slow)] if run.slow else []
        if run.out_of_budget is not None:
            parts.append(run.out_of_budget.message)
        url = run.out_of_budget.url if run.out_of_budget is not None else None
        run.add(FindingKind.SLOW_RESPONSE, "; ".join(parts),
                Evidence(url=url, timings={t.name: t.seconds for t in run.timings},
                         details=_limits(run)),
                seconds=max((s for _, s, _ in run.slow), default=0.0))
    took = sum(t.seconds for t in run.timings)
    if spec.type == "checkout" and spec.degraded_after is not None and not run.failed and \
            took > spec.degraded_after:
        unfinished = " and did not finish within its budget" if run.out_of_budget else ""
        run.add(FindingKind.BUSINESS_LOGIC_DEGRADED,
                f"checkout took {took:.1f}s over {len(run.timings)} steps{unfinished} (bound "
                f"degraded_after {spec.degraded_after:g}s): customers can order, but struggle",
                Evidence(timings={t.name: t.seconds for t in run.timings}, details=_limits(run)),
                seconds=took, threshold=spec.degraded_after)


def _limits(run: StepRun) -> dict[str, str]:
    if run.requests is None:
        return {}
    return {"budget_s": f"{run.requests.budget:g}",
            "request_timeout_s": f"{run.requests.request_timeout:g}"}


def _report_step(run: StepRun, name: str, kind: FindingKind, page: Page,
                 problems: list[str], status_ok: bool, markers: tuple[str, ...],
                 jar: RunCookies) -> None:
    res, text = page.res, page.text()
    signature = error_signature(text, markers) if status_ok and 200 <= res.status < 300 else None
    summary = f"step '{name}': " + "; ".join(problems)
    excerpt = scrubbed_excerpt(text, 0, EXCERPT_CHARS)
    if signature is not None:
        kind = FindingKind.PAGE_CORRUPTED
        summary += f" (the page shows {signature} instead of its content)"
        excerpt = signature_excerpt(text, markers, EXCERPT_CHARS)
    if res.truncated:
        summary += f" (body truncated at {len(res.body)} bytes)"
    flood = jar.flood_evidence()
    if flood:
        summary += f" (the shop set {flood['cookies_offered']} cookies in this run; "
        summary += f"{flood['cookies_ignored']} ignored as a browser would)"
    run.add(kind, summary, Evidence(url=res.url, status=res.status, excerpt=excerpt,
                                    timings={name: res.total_s},
                                    details={"step": name, **flood}))


def _build_request(step: Step, site: Site, variables: Mapping[str, str],
                   previous: Page | None) -> _Request | str:
    headers = {k: render(v, variables) for k, v in step.headers.items()}
    method: str = step.method
    fields = {k: render(v, variables) for k, v in (step.form or {}).items()}
    if step.submit_form is not None:
        if previous is None:
            return "submit_form needs a previous step's page"
        form = previous.tree().css_first(step.submit_form)
        if form is None:
            return f"no form matches {step.submit_form!r} on {previous.res.url}"
        url = urljoin(previous.res.url, form.attributes.get("action") or previous.res.url)
        if urlsplit(url).hostname != urlsplit(site.base_url).hostname:
            return f"form posts to another host ({urlsplit(url).hostname})"
        method = (form.attributes.get("method") or "GET").upper()
        fields = {**_form_fields(form), **fields}
    else:
        url = site.base_url + render(step.path or "/", variables)
    query = {k: render(v, variables) for k, v in step.query.items()}
    content: bytes | None = None
    if method == "GET" and step.submit_form is not None and fields:
        query = {**fields, **query}
    elif step.form is not None or step.submit_form is not None:
        content = urlencode(fields).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif step.body_json is not None:
        content = json.dumps(_render_json(step.body_json, variables)).encode()
        headers.setdefault("Content-Type", "application/json")
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    headers.setdefault("Accept", "application/json, text/html;q=0.9, */*;q=0.8")
    return _Request(method, url, headers, content)


def _form_fields(form: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    for node in form.css("input[name], select[name], textarea[name]"):
        name = node.attributes.get("name") or ""
        kind = (node.attributes.get("type") or "text").lower()
        if node.tag == "input":
            if kind in ("submit", "button", "image", "file", "reset"):
                continue
            if kind in ("checkbox", "radio") and "checked" not in node.attributes:
                continue
            fields[name] = node.attributes.get("value") or ("on" if kind == "checkbox" else "")
        elif node.tag == "select":
            option = node.css_first("option[selected]") or node.css_first("option")
            if option is not None:
                fields[name] = option.attributes.get("value") or option.text(strip=True)
        else:
            fields[name] = node.text()
    return fields


def _judge(expect: Expect, page: Page) -> tuple[list[str], bool]:
    """Problems with ``page`` against ``expect``, and whether its status was acceptable."""
    res = page.res
    if expect.status is not None:
        if res.status not in expect.status:
            wanted = ",".join(str(s) for s in expect.status)
            return [f"HTTP {res.status} (expected {wanted})"], False
    elif not 200 <= res.status < 300:
        return [f"HTTP {res.status} (expected 2xx)"], False
    problems = [f"missing text {s!r}" for s in expect.contains if s not in page.text()]
    problems += [f"unwanted text {s!r}" for s in expect.not_contains if s in page.text()]
    problems += [f"no match for /{p}/" for p in expect.matches if not re.search(p, page.text())]
    if expect.selector:
        tree = page.tree()
        problems += [f"no element matches {s!r}" for s in expect.selector
                     if tree.css_first(s) is None]
    if expect.json_values:
        doc = page.json()
        for check in expect.json_values:
            values = json_path_values(doc, check.path) if doc is not None else []
            if not values:
                problems.append(f"no JSON value at {check.path}")
            elif check.equals is not None and values[0] != check.equals:
                problems.append(f"{check.path} is {scalar_text(values[0])}, expected "
                                f"{scalar_text(check.equals)}")
            elif check.min is not None and not _at_least(values[0], check.min):
                problems.append(f"{check.path} is {scalar_text(values[0])}, expected at least "
                                f"{check.min:g}")
    for count in expect.count:
        got = count_items(page, count)
        if got is None or got < count.min:
            problems.append(f"found {got if got is not None else 'no countable'} items, "
                            f"expected at least {count.min}")
    return problems, True


def _at_least(value: Any, minimum: float) -> bool:
    try:
        return float(value) >= minimum
    except (TypeError, ValueError):
        return False


def _extract(extractors: Mapping[str, Extractor], page: Page, jar: RunCookies,
             variables: dict[str, str]) -> list[str]:
    problems = []
    for name, ex in extractors.items():
        value = extract_value(ex, page, jar)
        if value is None:
            problems.append(f"could not extract '{name}' ({_describe(ex)})")
        else:
            variables[name] = value
    return problems


def extract_value(ex: Extractor, page: Page, jar: RunCookies) -> str | None:
    """The value ``ex`` captures from ``page`` (None when absent or empty)."""
    value: str | None = None
    if ex.css is not None:
        node = page.tree().css_first(ex.css)
        if node is not None:
            value = node.attributes.get(ex.attribute) if ex.attribute else node.text(strip=True)
    elif ex.json_path is not None:
        doc = page.json()
        found = json_path_values(doc, ex.json_path) if doc is not None else []
        value = scalar_text(found[0]) if found and found[0] is not None else None
    elif ex.regex is not None:
        match = re.search(ex.regex, page.text())
        if match is not None:
            value = match.group(1) if match.groups() else match.group(0)
    elif ex.header is not None:
        value = page.res.headers.get(ex.header)
    elif ex.cookie is not None:
        value = jar.get(ex.cookie)
    return value or None


def _describe(ex: Extractor) -> str:
    if ex.css is not None:
        return f"css {ex.css!r}" + (f" @{ex.attribute}" if ex.attribute else "")
    if ex.json_path is not None:
        return f"json {ex.json_path}"
    if ex.regex is not None:
        return f"regex /{ex.regex}/"
    if ex.header is not None:
        return f"header {ex.header}"
    return f"cookie {ex.cookie}"
