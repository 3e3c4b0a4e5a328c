"""The probe contract: ProbeContext in, ProbeResult out, a storefront's fault never raises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from agent.config.schema import CheckSpec, Site
from agent.httpclient import HttpClients
from agent.state.baselines import BaselineStore
from classifier import Evidence, Finding, FindingKind

log = logging.getLogger(__name__)

DEADLINE_GRACE_S = 0.5
"""How long past its timeout a probe may take to wind down before it is cancelled."""


@dataclass(frozen=True, slots=True)
class StepTiming:
    """How long one named step of a check took (step names come from code or config)."""

    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one run of one check of one site saw."""

    site: str
    check: str
    success: bool
    duration_s: float
    started_at: datetime
    steps: tuple[StepTiming, ...] = ()
    measurements: Mapping[str, float] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


class RunClock:
    """A run's deadline, stopped while the run waits for the site's request slots (time
    queued behind other checks is not the check's own); the check's budget is counted on the
    same clock (``stopped_seconds``)."""

    def __init__(self) -> None:
        self._timeout: asyncio.Timeout | None = None
        self._waiting = 0
        self._stopped_at = 0.0
        self._stopped_s = 0.0
        self._deadline: float | None = None

    def bind(self, timeout: asyncio.Timeout) -> None:
        """The deadline ``run_guarded`` enforces for this run."""
        self._timeout = timeout
        self._deadline = timeout.when()

    def stopped_seconds(self) -> float:
        """How long this run's clock has been stopped so far (waits for slots)."""
        if self._waiting:
            return self._stopped_s + (time.perf_counter() - self._stopped_at)
        return self._stopped_s

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Stop the clock for the body (a wait for a slot); the deadline moves back by as long
        as it was stopped, so a long queue never cancels the run while it waits. Concurrent
        waits of one run (a check fetching assets in parallel) stop it once, from the first
        wait to the last."""
        if self._waiting == 0:
            self._stopped_at = time.perf_counter()
            if self._timeout is not None and self._deadline is not None:
                self._timeout.reschedule(None)
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                stopped = time.perf_counter() - self._stopped_at
                self._stopped_s += stopped
                if self._timeout is not None and self._deadline is not None:
                    self._timeout.reschedule(self._deadline + self._stopped_s)


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What a probe gets besides its spec: the shared client stack, its site and its deadline."""

    clients: HttpClients
    site: Site
    timeout: float
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    baselines: BaselineStore | None = None
    """Recent counts and learned script origins (None: the state dir is not usable)."""
    request_timeout: float | None = None
    """Each request's own timeout (None: the whole ``timeout``); ``timeout`` is the budget."""
    clock: RunClock = field(default_factory=RunClock)

    def request_limit(self) -> float:
        """Each request's own timeout, never more than the check's budget."""
        if self.request_timeout is None:
            return self.timeout
        return min(self.request_timeout, self.timeout)


class Probe(Protocol):
    """One check type: an async callable that never raises for a storefront's fault."""

    async def __call__(self, spec: CheckSpec, ctx: ProbeContext) -> ProbeResult: ...


def failure_kind(spec: CheckSpec) -> FindingKind:
    """The finding kind a check's total failure means (a deadline, a crash of the probe)."""
    return spec.failure_kind()


async def run_guarded(probe: Probe, spec: CheckSpec, ctx: ProbeContext) -> ProbeResult:
    """Run ``probe`` within its deadline; a hang or a probe bug becomes a finding, not a crash."""
    started_at = ctx.now()
    start = time.perf_counter()
    deadline = ctx.timeout + DEADLINE_GRACE_S
    try:
        async with asyncio.timeout(deadline) as timeout:
            ctx.clock.bind(timeout)
            return await probe(spec, ctx)
    except TimeoutError:
        summary = (f"check did not finish by its deadline, its {ctx.timeout:g}s budget (timeout), "
                   "and was cancelled")
        details = {"failure": "deadline"}
    except Exception as exc:  # a probe bug must not take the agent down
        log.exception("probe %s/%s crashed", ctx.site.name, spec.name)
        summary = f"probe error: {type(exc).__name__}"
        details = {"failure": "probe_error"}
    elapsed = time.perf_counter() - start
    finding = Finding(
        site=ctx.site.name, check=spec.name, kind=failure_kind(spec), summary=summary,
        observed_at=started_at,
        evidence=Evidence(url=ctx.site.base_url + spec.first_path(), timings={"total": elapsed},
                          details=details),
    )
    return ProbeResult(site=ctx.site.name, check=spec.name, success=False, duration_s=elapsed,
                       started_at=started_at, findings=(finding,))
