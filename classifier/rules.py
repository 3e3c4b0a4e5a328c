"""The default rule table mapping a finding kind (and its facts) to a support level.

Rules are data: the first rule whose kind matches and whose condition holds decides. Config
overrides are rules put in front of the defaults (``with_overrides``); they may change a kind's
level but cannot invent kinds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from classifier.kinds import FindingKind
from classifier.levels import Level


class Op(StrEnum):
    """Comparison a rule applies to one of the finding's facts."""

    LE = "<="
    LT = "<"
    GE = ">="
    GT = ">"
    EQ = "=="


@dataclass(frozen=True, slots=True)
class Condition:
    """``fact op value``; a finding without the fact does not match."""

    fact: str
    op: Op
    value: float

    def holds(self, facts: Mapping[str, float]) -> bool:
        """Whether the finding's facts satisfy the condition."""
        if self.fact not in facts:
            return False
        got = facts[self.fact]
        match self.op:
            case Op.LE:
                return got <= self.value
            case Op.LT:
                return got < self.value
            case Op.GE:
                return got >= self.value
            case Op.GT:
                return got > self.value
            case Op.EQ:
                return got == self.value

    def __str__(self) -> str:
        return f"{self.fact} {self.op.value} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Rule:
    """Maps findings of ``kind`` (optionally only when ``when`` holds) to ``level``.

    ``level`` None means the finding is about the agent, not the client: never a client incident.
    """

    id: str
    kind: FindingKind
    level: Level | None
    why: str
    when: Condition | None = None

    def matches(self, kind: FindingKind, facts: Mapping[str, float]) -> bool:
        """Whether this rule decides a finding of ``kind`` with ``facts``."""
        return self.kind is kind and (self.when is None or self.when.holds(facts))


K = FindingKind
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("site-down", K.SITE_DOWN, Level.L1, "the home page is unreachable or answers 5xx"),
    Rule("checkout-broken", K.CHECKOUT_BROKEN, Level.L1,
         "a shopper's step towards an order fails: orders are impossible"),
    Rule("payment-unavailable", K.PAYMENT_UNAVAILABLE, Level.L1,
         "checkout offers no payment method: payments are impossible"),
    Rule("security-breach", K.SECURITY_BREACH, Level.L1,
         "a script from an unknown origin or defacement: a severe security breach"),
    Rule("partial-outage", K.PARTIAL_OUTAGE, Level.L2,
         "some pages or sections fail while the home page works"),
    Rule("catalog-missing", K.CATALOG_MISSING, Level.L2,
         "not all products in the catalog are shown"),
    Rule("business-logic-degraded", K.BUSINESS_LOGIC_DEGRADED, Level.L2,
         "business logic is disrupted while customers can still order"),
    Rule("email-not-sent", K.EMAIL_NOT_SENT, Level.L2,
         "critical transactional emails are not sent"),
    Rule("service-down", K.SERVICE_DOWN, Level.L2,
         "a service process the shop needs is not running"),
    Rule("page-corrupted", K.PAGE_CORRUPTED, Level.L3, "some pages appear corrupted"),
    Rule("search-broken", K.SEARCH_BROKEN, Level.L3,
         "search, a secondary feature, shows no results"),
    Rule("filter-broken", K.FILTER_BROKEN, Level.L3,
         "filtering, a secondary feature, shows no results"),
    Rule("slow-response", K.SLOW_RESPONSE, Level.L3,
         "a page or step answers, but slower than its threshold (or the check's budget): "
         "slow, not broken"),
    Rule("resource-pressure-critical", K.RESOURCE_PRESSURE, Level.L2,
         "a server resource is critically exhausted; parts of the site will fail",
         Condition("critical", Op.GE, 1)),
    Rule("resource-pressure", K.RESOURCE_PRESSURE, Level.L3, "a server resource is under pressure"),
    Rule("tls-expired", K.TLS_EXPIRING, Level.L1,
         "the certificate has expired: browsers refuse the site", Condition("days_left", Op.LE, 0)),
    Rule("tls-expiring-soon", K.TLS_EXPIRING, Level.L2,
         "the certificate expires within 7 days", Condition("days_left", Op.LE, 7)),
    Rule("tls-expiring", K.TLS_EXPIRING, Level.L4,
         "the certificate expires within weeks (configuration)"),
    Rule("minor-feature-broken", K.MINOR_FEATURE_BROKEN, Level.L4,
         "a small feature (reviews, wishlist, newsletter) fails"),
    Rule("agent-offline", K.AGENT_OFFLINE, None,
         "the agent's own network is down; storefront failures meanwhile are not client incidents"),
)


def with_overrides(levels: Mapping[FindingKind, Level],
                   base: Sequence[Rule] = DEFAULT_RULES) -> tuple[Rule, ...]:
    """Rules where each kind in ``levels`` is forced to that level (from config), then ``base``.

    Overriding ``agent_offline`` is refused: it is about the agent, never a client incident.
    """
    if FindingKind.AGENT_OFFLINE in levels:
        raise ValueError("agent_offline has no level: it is about the agent, not the client")
    overrides = tuple(
        Rule(f"override:{kind.value}", kind, level, f"level set to {level} in the config")
        for kind, level in sorted(levels.items(), key=lambda kv: kv[0].value)
    )
    return overrides + tuple(base)
