"""The lease of a ``placement: one`` check on a real SQLite store: competing holders, renewal,
expiry, loss, release; the agent-side gate (``FleetPlacement``) with a clock the test moves."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.config.schema import Config, PlannedCheck
from agent.fleet.placement import (
    ALIVE_HEARTBEATS,
    CLAIM_TIMEOUT_S,
    FleetPlacement,
    lease_seconds,
)
from agent.state.store import Store, db_path
from tests.fleet.conftest import BACKENDS, SharedState

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def open_store(state: SharedState) -> Store:
    """A connection of the test's own to the shared store (each is one agent's)."""
    return Store(db_path(state.state_dir))


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_two_holders_competing_for_a_free_lease_one_wins(state: SharedState) -> None:
    a, b = open_store(state), open_store(state)
    try:
        first = a.claim_lease("shop", "home", "a1", "token-a", T0, T0 + seconds(10))
        second = b.claim_lease("shop", "home", "b1", "token-b", T0, T0 + seconds(10))
        assert (first.won, first.renewed, first.taken_from) == (True, False, None)
        assert (second.won, second.holder) == (False, "a1")
        assert second.expires_at == T0 + seconds(10)
        # another check's lease is independent
        assert b.claim_lease("shop", "checkout", "b1", "token-b", T0, T0 + seconds(10)).won
    finally:
        a.close()
        b.close()


def test_racing_threads_never_both_win(state: SharedState) -> None:
    """Two processes' worth of connections claim the same fresh lease at the same instant,
    200 times: exactly one wins each time."""
    rounds = 200
    stores = [open_store(state), open_store(state)]
    barrier = threading.Barrier(2)
    wins: list[list[bool]] = [[], []]

    def claim(i: int) -> None:
        for r in range(rounds):
            barrier.wait()
            claim = stores[i].claim_lease("shop", f"check-{r}", f"agent-{i}", f"token-{i}", T0,
                                          T0 + seconds(10))
            wins[i].append(claim.won)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in stores:
        s.close()
    assert len(wins[0]) == len(wins[1]) == rounds
    assert all(x != y for x, y in zip(wins[0], wins[1], strict=True))


def test_renewal_keeps_the_lease_and_its_start(state: SharedState) -> None:
    a, b = open_store(state), open_store(state)
    try:
        a.claim_lease("shop", "home", "a1", "token-a", T0, T0 + seconds(10))
        renewed = a.claim_lease("shop", "home", "a1", "token-a", T0 + seconds(9),
                                T0 + seconds(19))
        assert (renewed.won, renewed.renewed, renewed.expires_at) == (True, True,
                                                                      T0 + seconds(19))
        # past the first expiry but within the renewed one: b still loses
        assert not b.claim_lease("shop", "home", "b1", "token-b", T0 + seconds(15),
                                 T0 + seconds(25)).won
        row = a.conn.execute("SELECT acquired_at, renewed_at FROM leases").fetchone()
        assert (row["acquired_at"], row["renewed_at"]) == (T0.timestamp(),
                                                          (T0 + seconds(9)).timestamp())
    finally:
        a.close()
        b.close()


def test_an_expired_lease_is_taken_over_and_the_old_holder_loses(
        state: SharedState) -> None:
    a, b = open_store(state), open_store(state)
    try:
        a.claim_lease("shop", "home", "a1", "token-a", T0, T0 + seconds(10))
        assert not b.claim_lease("shop", "home", "b1", "token-b", T0 + seconds(10),
                                 T0 + seconds(20)).won  # expiry is exclusive: not yet
        taken = b.claim_lease("shop", "home", "b1", "token-b", T0 + seconds(10.5),
                              T0 + seconds(20.5))
        assert (taken.won, taken.taken_from, taken.renewed) == (True, "a1", False)
        late = a.claim_lease("shop", "home", "a1", "token-a", T0 + seconds(11), T0 + seconds(21))
        assert (late.won, late.holder) == (False, "b1")
    finally:
        a.close()
        b.close()


def test_same_name_other_process_does_not_share_the_lease(state: SharedState) -> None:
    """A restarted agent (same name, new token) waits for its old process's lease to expire."""
    a = open_store(state)
    try:
        a.claim_lease("shop", "home", "a1", "old-process", T0, T0 + seconds(10))
        assert not a.claim_lease("shop", "home", "a1", "new-process", T0 + seconds(1),
                                 T0 + seconds(11)).won
        assert a.claim_lease("shop", "home", "a1", "new-process", T0 + seconds(11),
                             T0 + seconds(21)).won
    finally:
        a.close()


def test_release_lets_another_take_over_at_once(state: SharedState) -> None:
    a, b = open_store(state), open_store(state)
    try:
        a.claim_lease("shop", "home", "a1", "token-a", T0, T0 + seconds(10))
        a.claim_lease("shop", "search", "a1", "token-a", T0, T0 + seconds(10))
        assert a.release_leases("token-a") == 2
        taken = b.claim_lease("shop", "home", "b1", "token-b", T0 + seconds(1),
                              T0 + seconds(11))
        assert (taken.won, taken.taken_from) == (True, None)
    finally:
        a.close()
        b.close()


# -- the agent-side gate ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def fleet_config(state_dir: str, name: str, placement: str = "one",
                 location: str | None = None) -> Config:
    return Config.model_validate({
        "agent": {"name": name, "location": location, "state_dir": state_dir, "jitter": 0},
        "sites": [{"name": "shop", "base_url": "http://127.0.0.1:9", "placement": placement,
                   "checks": [{"name": "home", "interval": "10s"},
                              {"name": "search", "path": "/search", "placement": "every"}]}],
    })


def planned(config: Config, check: str) -> PlannedCheck:
    return next(p for p in config.planned_checks() if p.check.name == check)


Make = Callable[..., FleetPlacement]
REGISTRIES: dict[int, CollectorRegistry] = {}


@pytest.fixture
async def make(state: SharedState) -> AsyncIterator[Make]:
    made: list[FleetPlacement] = []

    def build(name: str, clock: Clock, state_dir: str | None = None,
              location: str | None = None) -> FleetPlacement:
        config = fleet_config(state_dir or str(state.state_dir), name, location=location)
        registry = CollectorRegistry()
        p = FleetPlacement(config, registry, clock=clock)
        REGISTRIES[id(p)] = registry
        made.append(p)
        return p

    yield build
    for p in made:
        await p.stop()
        REGISTRIES.pop(id(p), None)


def value(p: FleetPlacement, name: str, **labels: str) -> float | None:
    """A sample of ``p``'s registry (the agent's own name as ``agent`` label)."""
    return REGISTRIES[id(p)].get_sample_value(name, {"agent": p.name, **labels})


async def test_gate_one_agent_runs_the_other_stands_by_then_takes_over(make: Make) -> None:
    clock = Clock()
    a, b = make("a1", clock), make("b1", clock)
    config = fleet_config("unused", "x")
    home, search = planned(config, "home"), planned(config, "search")
    assert home.placement.value == "one" and search.placement.value == "every"

    assert await a.may_run(home) and not await b.may_run(home)
    assert await a.may_run(search) and await b.may_run(search)  # every: both run it
    assert a.held == {"shop/home"} and b.held == frozenset()

    clock.now += 10  # a renews on schedule: b keeps standing by
    assert await a.may_run(home) and not await b.may_run(home)

    # a stops renewing (dead, paused): once its lease is over, b's next due run takes it over
    clock.now += lease_seconds(10, 0) + 0.1
    assert await b.may_run(home)
    assert b.held == {"shop/home"}
    assert value(b, "storewatch_fleet_lease_losses_total") == 0

    # a comes back: its lease is gone, it counts one loss and stands by
    assert not await a.may_run(home)
    assert a.held == frozenset()
    assert value(a, "storewatch_fleet_lease_losses_total") == 1
    assert not await a.may_run(home)
    assert value(a, "storewatch_fleet_lease_losses_total") == 1  # once, not once per run

    runs = "storewatch_fleet_check_runs_total"
    assert value(a, runs, site="shop", check="home", placement="one") == 2
    assert value(a, runs, site="shop", check="search", placement="every") == 1
    assert value(b, runs, site="shop", check="home", placement="one") == 1
    assert value(b, "storewatch_fleet_leases_held") == 1
    assert value(a, "storewatch_fleet_leases_held") == 0


async def test_a_clean_stop_hands_over_at_the_next_run(make: Make) -> None:
    clock = Clock()
    a, b = make("a1", clock), make("b1", clock)
    home = planned(fleet_config("unused", "x"), "home")
    assert await a.may_run(home) and not await b.may_run(home)
    await a.stop()
    clock.now += 1  # long before a's lease would have expired
    assert await b.may_run(home)


async def test_store_unreachable_runs_anyway_and_says_so(make: Make, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    clock = Clock()
    a = make("a1", clock, state_dir=str(blocker))
    home = planned(fleet_config("unused", "x"), "home")
    assert await a.may_run(home) and await a.may_run(home)
    assert value(a, "storewatch_fleet_unclaimed_runs_total") == 2
    assert not a.reachable and not await a.beat()
    assert value(a, "storewatch_fleet_store_reachable") == 0
    unreachable = [r for r in caplog.records if "shared store unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # one line when it starts, not one per run
    assert "run here without a lease" in unreachable[0].getMessage()


async def test_heartbeats_show_who_is_alive(make: Make) -> None:
    clock = Clock()
    a = make("a1", clock, location="fra")
    b = make("b1", clock, location="nyc")
    assert await a.beat() and await b.beat()
    assert [(x.name, x.location) for x in b.agents] == [("a1", "fra"), ("b1", "nyc")]

    def up(p: FleetPlacement) -> dict[str, float]:
        return {s.labels["agent"]: s.value for m in REGISTRIES[id(p)].collect()
                for s in m.samples if s.name == "storewatch_fleet_agent_up"}

    assert up(b) == {"a1": 1.0, "b1": 1.0}
    clock.now += ALIVE_HEARTBEATS * b.heartbeat_s + 1  # a1 falls silent; b1 goes on
    assert await b.beat()
    assert up(b) == {"a1": 0.0, "b1": 1.0}


@pytest.mark.parametrize("state", BACKENDS, indirect=True)
async def test_two_live_processes_with_one_name_say_so(make: Make,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    a, twin = make("a1", clock), make("a1", clock)
    assert await a.beat() and await twin.beat()  # twin's first heartbeat: could be a restart
    assert not twin.name_conflict and value(twin, "storewatch_fleet_name_conflict") == 0
    assert await a.beat() and await twin.beat()  # after its own first one: only a twin writes
    assert a.name_conflict and twin.name_conflict
    assert value(a, "storewatch_fleet_name_conflict") == 1
    assert await a.beat() and await twin.beat()
    said = [r for r in caplog.records if "also runs as agent 'a1'" in r.getMessage()]
    assert len(said) == 2 and all(r.levelname == "ERROR" for r in said)  # once per process
    await twin.stop()
    assert await a.beat() and a.name_conflict  # the row still held the twin's last heartbeat
    assert await a.beat() and not a.name_conflict  # a wrote the row last: the twin is gone
    assert value(a, "storewatch_fleet_name_conflict") == 0


async def test_a_restarted_agent_is_not_its_own_twin(make: Make) -> None:
    clock = Clock()
    before = make("a1", clock)
    assert await before.beat() and await before.beat()
    await before.stop()  # or killed: its heartbeat row stays behind
    after = make("a1", clock)
    for _ in range(3):
        assert await after.beat()
        assert not after.name_conflict
    assert value(after, "storewatch_fleet_name_conflict") == 0


def test_store_schema_has_the_fleet_tables(state: SharedState) -> None:
    store: Store = open_store(state)
    try:
        tables = {r[0] for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"agents", "leases"} <= tables
    finally:
        store.close()


async def test_a_reload_that_drops_placement_one_hands_the_check_over(make: Make,
                                                                      state: SharedState) -> None:
    clock = Clock()
    a, b = make("a1", clock), make("b1", clock)
    home = planned(fleet_config("unused", "x"), "home")
    assert await a.may_run(home) and not await b.may_run(home)
    a.reconfigure(fleet_config(str(state.state_dir), "a1", placement="every"))
    assert a.held == frozenset()
    await a.stop()  # waits for the release
    clock.now += 1
    assert await b.may_run(home)


def test_placement_check_overrides_site_default_every() -> None:
    config = Config.model_validate({"sites": [
        {"name": "one-site", "base_url": "http://127.0.0.1:9", "placement": "one",
         "checks": [{"name": "home"}, {"name": "search", "path": "/s", "placement": "every"}]},
        {"name": "plain", "base_url": "http://127.0.0.1:9",
         "checks": [{"name": "home"}, {"name": "journey", "type": "browser",
                                       "steps": [{"name": "open", "goto": "/"}],
                                       "placement": "one"}]},
    ]})
    assert {p.key: p.placement.value for p in config.planned_checks()} == {
        "one-site/home": "one", "one-site/search": "every", "plain/home": "every",
        "plain/journey": "one"}


async def test_a_locked_store_neither_blocks_the_loop_nor_stops_the_check(
        make: Make, state: SharedState, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the store's write lock: the claim gives up after CLAIM_TIMEOUT_S,
    the check runs anyway (counted), the event loop keeps turning; once the lock is gone the
    lease is claimed again."""
    clock = Clock()
    a = make("a1", clock)
    home = planned(fleet_config("unused", "x"), "home")
    assert await a.may_run(home)  # schema created, lease held
    locker = sqlite3.connect(db_path(state.state_dir), timeout=1, isolation_level=None)
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.05)

    ticker = asyncio.create_task(tick())
    try:
        locker.execute("BEGIN EXCLUSIVE")
        clock.now += 10
        started = asyncio.get_running_loop().time()
        assert await a.may_run(home)
        waited = asyncio.get_running_loop().time() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        stop.set()
        await ticker
    assert waited >= CLAIM_TIMEOUT_S * 0.9
    assert ticks >= 10  # the loop went on while the claim waited in the store thread
    assert value(a, "storewatch_fleet_unclaimed_runs_total") == 1
    assert value(a, "storewatch_fleet_store_reachable") == 0
    clock.now += 10
    assert await a.may_run(home)
    assert a.reachable and a.held == {"shop/home"}
    assert any("shared store reachable again" in r.getMessage() for r in caplog.records)
