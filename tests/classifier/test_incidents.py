"""Table-driven tests of the pure incident decisions: fingerprint, inhibition, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from classifier import (
    EventType,
    FindingKind,
    Level,
    Phase,
    Policy,
    Relation,
    Run,
    TicketOp,
    Track,
    fingerprint,
    key_of,
    relation,
    step,
)
from classifier.inhibit import inhibitor

K = FindingKind
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_fingerprint_is_stable_and_shaped() -> None:
    fp = fingerprint("acme-shop", K.CHECKOUT_BROKEN, "checkout")
    assert fp == fingerprint("acme-shop", K.CHECKOUT_BROKEN, "checkout")
    assert fp.startswith("storewatch-") and len(fp) == len("storewatch-") + 12
    int(fp.removeprefix("storewatch-"), 16)


@pytest.mark.parametrize(("a", "b", "same"), [
    (("shop", K.SITE_DOWN, "home"), ("shop", K.SITE_DOWN, "home-2"), True),
    (("shop", K.CHECKOUT_BROKEN, "checkout"), ("shop", K.CHECKOUT_BROKEN, "cart-api"), True),
    (("shop", K.PAGE_CORRUPTED, "home"), ("shop", K.PAGE_CORRUPTED, "category"), True),
    (("shop", K.SLOW_RESPONSE, "home"), ("shop", K.SLOW_RESPONSE, "category"), False),
    (("shop", K.PARTIAL_OUTAGE, "home"), ("shop", K.PARTIAL_OUTAGE, "category"), False),
    (("shop", K.SERVICE_DOWN, "mysql"), ("shop", K.SERVICE_DOWN, "php-fpm"), False),
    (("shop", K.CHECKOUT_BROKEN, "checkout"), ("other", K.CHECKOUT_BROKEN, "checkout"), False),
    (("shop", K.SITE_DOWN, "home"), ("shop", K.PARTIAL_OUTAGE, "home"), False),
    (("shop", K.TLS_EXPIRING, "home"), ("shop", K.TLS_EXPIRING, "api"), True),
], ids=["site-down-site-wide", "checkout-per-site", "corruption-per-site", "slow-per-check",
        "partial-per-check", "service-per-check", "per-site", "per-kind", "tls-site-wide"])
def test_key_of_groups_what_is_one_problem(a: tuple[str, K, str], b: tuple[str, K, str],
                                           same: bool) -> None:
    assert (key_of(*a) == key_of(*b)) is same


def test_group_by_check_splits_business_kinds_but_never_site_wide_ones() -> None:
    by_check = ("site", "kind", "check")
    assert (key_of("shop", K.CHECKOUT_BROKEN, "checkout", by_check)
            != key_of("shop", K.CHECKOUT_BROKEN, "cart-api", by_check))
    assert (key_of("shop", K.SITE_DOWN, "home", by_check)
            == key_of("shop", K.SITE_DOWN, "api", by_check))


@pytest.mark.parametrize(("kind", "active", "expected"), [
    (K.PAYMENT_UNAVAILABLE, {K.CHECKOUT_BROKEN}, K.CHECKOUT_BROKEN),
    (K.BUSINESS_LOGIC_DEGRADED, {K.CHECKOUT_BROKEN}, K.CHECKOUT_BROKEN),
    (K.PAYMENT_UNAVAILABLE, {K.SITE_DOWN, K.CHECKOUT_BROKEN}, K.SITE_DOWN),
    (K.CATALOG_MISSING, {K.CHECKOUT_BROKEN}, None),
    (K.CHECKOUT_BROKEN, {K.PAYMENT_UNAVAILABLE}, None),
    (K.PAYMENT_UNAVAILABLE, set(), None),
])
def test_inhibitor_is_the_cause_inside_the_site(kind: K, active: set[K],
                                                expected: K | None) -> None:
    assert inhibitor(kind, active) is expected


@pytest.mark.parametrize(("kind", "active", "expected"), [
    (K.CHECKOUT_BROKEN, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.CATALOG_MISSING, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.SEARCH_BROKEN, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.PAGE_CORRUPTED, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.PARTIAL_OUTAGE, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.MINOR_FEATURE_BROKEN, {K.SITE_DOWN}, Relation.SUPPRESSED),
    (K.SECURITY_BREACH, {K.SITE_DOWN}, Relation.OWN),
    (K.CHECKOUT_BROKEN, set(), Relation.OWN),
    (K.CHECKOUT_BROKEN, {K.PAGE_CORRUPTED}, Relation.OWN),
    (K.SITE_DOWN, {K.SITE_DOWN}, Relation.OWN),
    (K.SERVICE_DOWN, {K.SITE_DOWN}, Relation.CAUSE),
    (K.RESOURCE_PRESSURE, {K.CHECKOUT_BROKEN}, Relation.CAUSE),
    (K.EMAIL_NOT_SENT, {K.PAGE_CORRUPTED}, Relation.CAUSE),
    (K.SERVICE_DOWN, set(), Relation.OWN),
    (K.SERVICE_DOWN, {K.RESOURCE_PRESSURE}, Relation.OWN),
    (K.SERVICE_DOWN, {K.AGENT_OFFLINE}, Relation.OWN),
], ids=["checkout", "catalog", "search", "page", "partial", "minor", "security-own",
        "nothing-open", "other-open", "site-down-itself", "service-cause", "pressure-cause",
        "email-cause", "host-alone", "host-with-host", "host-with-offline"])
def test_relation(kind: K, active: set[K], expected: Relation) -> None:
    assert relation(kind, active) is expected


F = "F"   # failing L1 run
F2 = "F2"  # failing L2 run
P = "P"   # passing run
S = "S"   # failing, not ticketable (suppressed / maintenance)


def _run(code: str) -> Run:
    match code:
        case "F":
            return Run("home", True, Level.L1)
        case "F2":
            return Run("home", True, Level.L2)
        case "S":
            return Run("home", True, Level.L1, ticketable=False, why_not="maintenance")
        case _:
            return Run("home", False)


DEFAULT = Policy()
MINUTE = timedelta(minutes=1)


def _play(codes: str, policy: Policy = DEFAULT, every: timedelta = MINUTE,
          ) -> tuple[Track, list[tuple[EventType, TicketOp | None]]]:
    track, seen = Track(), []
    for i, code in enumerate(codes.split()):
        track, events = step(track, _run(code), T0 + i * every, policy)
        seen.extend((e.type, e.ticket) for e in events)
    return track, seen


def _tickets(seen: list[tuple[EventType, TicketOp | None]]) -> list[str]:
    return [f"{t.value}:{op.value}" for t, op in seen if op is not None]


@pytest.mark.parametrize(("runs", "policy", "phase", "tickets"), [
    ("F", Policy(), Phase.PENDING, []),
    ("F F", Policy(), Phase.OPEN, ["opened:open"]),
    ("F2 F2", Policy(), Phase.PENDING, []),
    ("F2 F2 F2", Policy(), Phase.OPEN, ["opened:open"]),
    ("F2", Policy(confirm=1), Phase.OPEN, ["opened:open"]),
    ("F P F", Policy(), Phase.PENDING, []),
    ("F F P", Policy(), Phase.OPEN, ["opened:open"]),
    ("F F P P", Policy(), Phase.RESOLVED, ["opened:open", "resolved:resolve"]),
    ("F F P F P P", Policy(), Phase.RESOLVED, ["opened:open", "resolved:resolve"]),
    ("F F P P P", Policy(recover=3), Phase.RESOLVED, ["opened:open", "resolved:resolve"]),
    ("F F F F", Policy(), Phase.OPEN, ["opened:open"]),
    ("F2 F2 F2 F", Policy(), Phase.OPEN, ["opened:open", "escalated:update"]),
    ("F F F2", Policy(), Phase.OPEN, ["opened:open", "deescalated:update"]),
    ("S S", Policy(), Phase.OPEN, []),
    ("S S P P", Policy(), Phase.RESOLVED, []),
    ("S S F", Policy(), Phase.OPEN, ["opened:open"]),
    ("F F S S P P", Policy(), Phase.RESOLVED, ["opened:open", "resolved:resolve"]),
    ("F F F F", Policy(reminder=timedelta(minutes=2)), Phase.OPEN,
     ["opened:open", "reminder:update"]),
], ids=["one-fail-pending", "l1-confirmed-after-2", "l2-needs-3", "l2-confirmed-after-3",
        "per-check-confirm-1", "pass-resets-pending", "one-pass-stays-open",
        "two-passes-resolve", "pass-streak-restarts", "recover-3", "no-duplicate-open",
        "escalation", "de-escalation", "maintenance-not-ticketed",
        "maintenance-resolves-silently", "ticketed-once-no-longer-silenced",
        "silence-after-open-keeps-ticket", "reminder"])
def test_lifecycle(runs: str, policy: Policy, phase: Phase, tickets: list[str]) -> None:
    track, seen = _play(runs, policy)
    assert track.phase is phase
    assert _tickets(seen) == tickets


def test_flapping_holds_the_incident_open_instead_of_reopening() -> None:
    policy = Policy(confirm=1, recover=1, flap_changes=4, flap_window=timedelta(hours=1))
    track, seen = _play("F P F P F P F P", policy)
    assert _tickets(seen) == ["opened:open", "resolved:resolve", "opened:open",
                              "flapping:update"]
    assert track.phase is Phase.OPEN and track.flapping


@pytest.mark.parametrize("threshold", [4, 5, 6])
def test_flapping_message_counts_changes_up_to_the_configured_threshold(threshold: int) -> None:
    policy = Policy(confirm=1, recover=1, flap_changes=threshold,
                    flap_window=timedelta(hours=1))
    track, texts, changes = Track(), [], 0
    for i, code in enumerate("F P " * 5):
        if code == " ":
            continue
        phase = track.phase
        track, events = step(track, _run(code), T0 + i * MINUTE, policy)
        changes += track.phase is not phase
        texts += [e.text for e in events if e.type is EventType.FLAPPING]
        if texts:
            break
    assert texts == [f"flapping: {threshold} state changes within 60 min (threshold "
                     f"{threshold}); held open until it is stable"]
    # the threshold-th change is an open (made, then flagged) or a resolve (held back)
    assert changes == (threshold if threshold % 2 else threshold - 1)


def test_flapping_incident_resolves_once_the_window_is_quiet() -> None:
    policy = Policy(confirm=1, recover=1, flap_changes=4, flap_window=timedelta(minutes=10))
    track, seen = _play("F P F P " + "P " * 12, policy)
    assert track.phase is Phase.RESOLVED and not track.flapping
    assert _tickets(seen)[-1] == "resolved:resolve"
    assert _tickets(seen).count("opened:open") == 2


def test_a_site_wide_fingerprint_recovers_only_when_every_check_passes() -> None:
    policy = Policy(confirm=1, recover=1)
    track, _ = step(Track(), Run("home", True, Level.L1), T0, policy)
    track, _ = step(track, Run("home-2", True, Level.L1), T0, policy)
    track, events = step(track, Run("home", False), T0, policy)
    assert track.phase is Phase.OPEN and events == ()
    track, events = step(track, Run("home-2", False), T0, policy)
    assert track.phase is Phase.RESOLVED
    assert [e.ticket for e in events] == [TicketOp.RESOLVE]


def test_level_none_is_recorded_but_never_ticketed() -> None:
    track, seen = Track(), []
    for i in range(3):
        track, events = step(track, Run("home", True, None, why_not="agent offline"),
                             T0 + timedelta(minutes=i), Policy())
        seen.extend(events)
    assert track.phase is Phase.OPEN
    assert all(e.ticket is None for e in seen)
