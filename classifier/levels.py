"""Support levels (L1 emergency … L4 regular) and client plans, from the agency's support page."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Level(IntEnum):
    """Severity on the agency's support scale; a lower number is more urgent."""

    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4

    @property
    def title(self) -> str:
        """Short name of the level, e.g. ``emergency``."""
        return _TITLES[self]

    @property
    def definition(self) -> str:
        """The agency's definition of the level (support-packages page)."""
        return _DEFINITIONS[self]

    def __str__(self) -> str:
        return f"L{self.value}"


_TITLES = {
    Level.L1: "emergency",
    Level.L2: "partial outage",
    Level.L3: "high, non-emergency",
    Level.L4: "regular",
}

_DEFINITIONS = {
    Level.L1: "site is down, orders or payments impossible, or a severe security breach",
    Level.L2: "part of the site is broken or business logic disrupted, "
    "but customers can still place orders",
    Level.L3: "some pages appear corrupted, or secondary features such as search or filtering "
    "show no results",
    Level.L4: "small bugs (reviews, wishlists), configuration or small design issues",
}


class Plan(StrEnum):
    """How the client buys support: a package outranks on-demand work at the same level."""

    SUPPORT_PACKAGE = "support-package"
    ON_DEMAND = "on-demand"


def priority_rank(level: Level, plan: Plan) -> int:
    """Ticket priority rank, 1 (most urgent) to 8; the plan orders clients *within* a level.

    The level is never changed by the plan: every L1 ranks above every L2.
    """
    return (level.value - 1) * 2 + (1 if plan is Plan.SUPPORT_PACKAGE else 2)
