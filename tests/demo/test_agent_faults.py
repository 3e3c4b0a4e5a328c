"""Per-agent faults of the demo store over real sockets: a request gets the global faults plus
those of the agent its ``X-Storewatch-Agent`` header names (issue 15: location confirmation on
one machine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent.config.schema import AgentSettings
from agent.demo import storefront
from agent.demo.storefront import DemoStore, UnknownFaultError, start_store
from agent.httpclient import FetchError, HttpClients, fetch
from agent.identity import AGENT_HEADER


@pytest.fixture
async def store() -> AsyncIterator[DemoStore]:
    s = await start_store()
    try:
        yield s
    finally:
        await s.close()


def shopper(store: DemoStore, agent: str | None) -> httpx.AsyncClient:
    headers = {AGENT_HEADER: agent} if agent is not None else {}
    return httpx.AsyncClient(base_url=store.url, headers=headers, timeout=5.0)


async def post_faults(store: DemoStore, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=store.url, timeout=5.0) as control:
        return await control.post("/_demo/faults", json=body)


async def answers(client: httpx.AsyncClient, path: str = "/") -> int | None:
    """The status of ``path``, or None when the store holds the request (``down``)."""
    try:
        return (await client.get(path, timeout=0.6)).status_code
    except httpx.TimeoutException:
        return None


async def test_two_agents_see_different_faults(store: DemoStore) -> None:
    assert storefront.AGENT_HEADER == AGENT_HEADER  # the store reads what the agent sends
    async with shopper(store, "a1") as a1, shopper(store, "a2") as a2, \
            shopper(store, None) as anonymous:
        resp = await post_faults(store, {"faults": ["down"], "agents": ["a1"]})
        assert resp.status_code == 200
        assert resp.json()["faults"] == [] and resp.json()["agents"] == {"a1": ["down"]}
        assert await answers(a1) is None
        assert await answers(a2) == 200
        assert await answers(anonymous) == 200
        assert store.faults == set()

        # Later: down for a1 and a2 (each named agent's set is replaced); a3 is still served.
        await post_faults(store, {"faults": ["down"], "agents": ["a1", "a2"]})
        async with shopper(store, "a3") as a3:
            assert await answers(a3) == 200
        assert await answers(a1) is None
        assert await answers(a2) is None
        state = (await a1.get("/_demo/faults", timeout=2.0)).json()  # never faults, for anyone
        assert state["agents"] == {"a1": ["down"], "a2": ["down"]}
        assert "agents" in state["usage"] and AGENT_HEADER in state["usage"]

        # A request held for a1 dies unanswered when a1's fault clears; a2 stays down.
        held = asyncio.create_task(a1.get("/category/gear"))
        await asyncio.sleep(0.2)
        assert not held.done()
        cleared = await post_faults(store, {"faults": [], "agents": ["a1"]})
        assert cleared.json()["agents"] == {"a2": ["down"]}
        with pytest.raises(httpx.TransportError):
            await held
        assert await answers(a1, "/category/gear") == 200
        assert await answers(a2) is None


async def test_agent_faults_add_to_the_global_set(store: DemoStore) -> None:
    async with shopper(store, "a1") as a1, shopper(store, "a2") as a2:
        await post_faults(store, {"faults": ["search"]})
        await post_faults(store, {"faults": ["server_error"], "agents": ["a2"]})
        search = "/search?q=tee"
        assert "product-card" not in (await a1.get(search)).text   # global: everyone
        assert (await a1.get("/")).status_code == 200
        assert (await a2.get("/")).status_code == 503               # a2's own on top
        # Replacing a2's set changes only a2's; a POST without agents only the global one.
        await post_faults(store, {"faults": ["checkout"], "agents": ["a2"]})
        assert (await a2.get("/")).status_code == 200
        page = (await a2.get("/product/aurora-running-tee")).text
        assert (await a2.post("/cart/add", data={"sku": "DS-TOP-01", "qty": "1",
                                                 "form_key": "x"})).status_code == 500
        assert "Add to Cart" in page
        state = (await post_faults(store, {"faults": []})).json()
        assert state["faults"] == [] and state["agents"] == {"a2": ["checkout"]}
        assert "product-card" in (await a1.get(search)).text


async def test_set_faults_for_agents_in_process(store: DemoStore) -> None:
    store.set_faults(["server_error"], agents=["a1"])
    store.set_faults(["slow"])
    assert dict(store.agent_faults) == {"a1": frozenset({"server_error"})}
    assert store.faults == {"slow"}
    store.set_faults([])
    async with shopper(store, "a1") as a1, shopper(store, "a2") as a2:
        assert (await a1.get("/")).status_code == 503
        assert (await a2.get("/")).status_code == 200
    store.set_faults([], agents=["a1"])
    assert dict(store.agent_faults) == {}
    with pytest.raises(UnknownFaultError, match="meteor"):
        store.set_faults(["meteor"], agents=["a1"])


@pytest.mark.parametrize("agents", [[], "a1", [1], [""], ["x" * 65]])
async def test_bad_agents_are_refused(store: DemoStore, agents: object) -> None:
    store.set_faults(["search"], agents=["a9"])
    resp = await post_faults(store, {"faults": ["down"], "agents": agents})
    assert resp.status_code == 400
    assert '"agents" must be a non-empty list' in resp.json()["error"]
    assert store.faults == set() and dict(store.agent_faults) == {"a9": frozenset({"search"})}


async def test_the_agents_own_requests_carry_its_name(store: DemoStore) -> None:
    """The real client stack (HttpClients.for_agent) sends agent.name: a per-agent fault hits
    only that agent's requests."""
    await post_faults(store, {"faults": ["server_error"], "agents": ["fra-1"]})
    stacks = {name: HttpClients.for_agent(AgentSettings(name=name)) for name in ("fra-1", "nyc-1")}
    try:
        statuses = {}
        for name, stack in stacks.items():
            res = await fetch(stack.get(), store.url + "/", timeout=5.0, max_body_bytes=1 << 20,
                              max_redirects=2, headers={"Accept": "text/html"})
            assert not isinstance(res, FetchError), res
            statuses[name] = res.status
    finally:
        for stack in stacks.values():
            await stack.aclose()
    assert statuses == {"fra-1": 503, "nyc-1": 200}
