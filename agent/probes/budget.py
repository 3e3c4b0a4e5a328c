"""A check's requests: each within its own timeout and the site's politeness slots, all of them
within the check's budget.

Two limits, both configurable at defaults, site and check level (see docs/configuration.md):

* ``request_timeout`` (default 30s): a single request (redirects and body included) that gets
  no complete answer within it has failed — that is a broken page or step.
* ``timeout``, the check's budget (default 45s, at most 75 % of the interval): every request of
  the run (waits for the site's request slots excluded, agent/politeness.py). When earlier
  requests were slow and the budget runs out before a later request could use its own timeout,
  that request fails with
  ``FetchFailure.BUDGET``: the shop is slow, not broken, and probes report ``slow_response``.

Every message names the configured limit and the page or step, never the time left over.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from agent.httpclient import CookieStore, FetchError, FetchFailure, FetchResult, fetch
from agent.politeness import CHECK_PRIORITY
from agent.probes.base import ProbeContext

MIN_GRANT_S = 0.05
"""Less budget than this left: the request is not sent at all."""
_BUDGET_SLACK_S = 0.05
"""A grant this much shorter than the request's own timeout counts as cut by the budget."""


class CheckRequests:
    """Sends one check run's requests through the shared client stack."""

    def __init__(self, ctx: ProbeContext, *, max_body_bytes: int, max_redirects: int = 5,
                 priority: int = CHECK_PRIORITY) -> None:
        site = ctx.site
        self.clock = ctx.clock
        self.priority = priority
        self.client = ctx.clients.get(verify=site.tls.verify, ca_file=site.tls.ca_file,
                                      proxy=site.proxy)
        self.gate = ctx.clients.politeness.gate(site.name, site.max_in_flight)
        self.budget = ctx.timeout
        self.request_timeout = ctx.request_limit()
        self.max_body_bytes = max_body_bytes
        self.max_redirects = max_redirects
        self.start = time.perf_counter()
        self._stopped0 = self.clock.stopped_seconds()
        self.waited_s = 0.0

    def spent(self) -> float:
        """Seconds of the budget used so far: the run's time less its waits for slots (the
        run's clock, which its deadline follows too)."""
        return time.perf_counter() - self.start - (self.clock.stopped_seconds() - self._stopped0)

    async def fetch(self, url: str, *, where: str, method: str = "GET",
                    headers: Mapping[str, str] | None = None, content: bytes | None = None,
                    max_body_bytes: int | None = None,
                    cookies: CookieStore | None = None) -> FetchResult | FetchError:
        """One exchange; ``where`` names the page or step in budget messages (the caller names
        it in the others). Never raises for the server's faults: timeouts come back naming the
        limit that ended them."""
        started = time.perf_counter()
        async with contextlib.AsyncExitStack() as held:
            async with self.clock.paused():  # queued behind other requests to the site
                waited = await held.enter_async_context(self.gate.slot(self.priority))
            if waited > 0:  # not this check's time: neither its budget nor its deadline
                self.waited_s += waited
                started += waited
            before = self.spent()
            grant = min(self.request_timeout, self.budget - before)
            if grant < MIN_GRANT_S:
                return self._out_of_budget(url, where, started, before, sent=False)
            outcome = await fetch(
                self.client, url, method=method, headers=headers, content=content,
                timeout=grant, max_body_bytes=max_body_bytes or self.max_body_bytes,
                max_redirects=self.max_redirects, cookies=cookies)
        if isinstance(outcome, FetchError) and outcome.failure is FetchFailure.TIMEOUT:
            if grant < self.request_timeout - _BUDGET_SLACK_S:
                return self._out_of_budget(outcome.url, where, started, before, sent=True)
            return FetchError(FetchFailure.TIMEOUT,
                              f"no complete response within the request timeout of "
                              f"{self.request_timeout:g}s", outcome.url, outcome.elapsed_s)
        return outcome

    def _out_of_budget(self, url: str, where: str, started: float, before: float, *,
                       sent: bool) -> FetchError:
        what = "before it answered" if sent else "before it could be sent"
        return FetchError(FetchFailure.BUDGET,
                          f"{where}: check budget {self.budget:g}s (timeout) used up {what} "
                          f"(earlier requests took {before:.1f}s); the shop is slow, not failing",
                          url, time.perf_counter() - started)


def slow_summary(slow: list[tuple[str, float, float]]) -> str:
    """One line naming every (page or step, seconds, threshold) that was too slow."""
    parts = [f"{where} took {seconds:.2f}s (threshold {threshold:g}s)"
             for where, seconds, threshold in slow]
    return "; ".join(parts)
