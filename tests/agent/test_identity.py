"""The agent's name on the wire: ``X-Storewatch-Agent`` and the User-Agent on every request of
the shared client stack, over real sockets (issue 15 item 2)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from agent import __version__
from agent.config.schema import AgentSettings
from agent.demo.storefront import DemoStore
from agent.errors import ConfigError
from agent.httpclient import FetchError, FetchResult, HttpClients, fetch
from agent.identity import AGENT_HEADER, identified, user_agent, with_agent_name
from agent.service import load
from tests.agent.servers import serve
from tests.conftest import ROOT

Seen = list[tuple[str, dict[str, str]]]


def test_user_agent_names_the_agent() -> None:
    default = AgentSettings(name="fra-1")
    assert user_agent(default) == (
        f"storewatch/{__version__} (synthetic monitoring; no orders placed; agent fra-1)")
    placed = AgentSettings(name="fra-1", user_agent="AgencyBot/2 ({agent}; +https://a.example)")
    assert user_agent(placed) == "AgencyBot/2 (fra-1; +https://a.example)"
    as_written = AgentSettings(name="fra-1", user_agent="AgencyBot/2")
    assert user_agent(as_written) == "AgencyBot/2 (agent fra-1)"
    assert with_agent_name("x {agent} {agent}", "a") == "x a a"


def test_a_checks_headers_keep_the_identity() -> None:
    own = identified({"x-storewatch-agent": "forged", "user-agent": "Mobile/1", "Accept": "*/*"},
                     "a1")
    assert own == {"user-agent": "Mobile/1 (agent a1)", "Accept": "*/*", AGENT_HEADER: "a1"}


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, str, Seen]]:
    """Two loopback servers (two origins) that record each request's headers; the first one
    redirects /away to the second and /same to itself."""
    seen: Seen = []

    async def other(request: web.Request) -> web.StreamResponse:
        seen.append(("other", {k.lower(): v for k, v in request.headers.items()}))
        return web.Response(text="other")

    async with serve({"/{tail:.*}": other}) as other_url:
        async def own(request: web.Request) -> web.StreamResponse:
            seen.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
            if request.path == "/away":
                raise web.HTTPFound(other_url + "/landing")
            if request.path == "/same":
                raise web.HTTPFound("/")
            return web.Response(text="own")

        async with serve({"/{tail:.*}": own}) as own_url:
            yield own_url, other_url, seen


async def get(clients: HttpClients, url: str, headers: dict[str, str] | None = None
              ) -> FetchResult:
    res = await fetch(clients.get(), url, headers=headers, timeout=5.0, max_body_bytes=4096,
                      max_redirects=3)
    assert not isinstance(res, FetchError), res
    return res


async def test_every_request_and_hop_carries_the_agent(
        recorder: tuple[str, str, Seen]) -> None:
    own_url, _, seen = recorder
    clients = HttpClients.for_agent(AgentSettings(name="a1", location="fra"))
    try:
        await get(clients, own_url + "/same")
        # A check's own User-Agent is kept as written, with the name appended; a forged
        # X-Storewatch-Agent (refused in the config, see below) never replaces the agent's.
        await get(clients, own_url + "/", {"User-Agent": "Mobile/1", AGENT_HEADER: "forged"})
        # A redirect to another host: the identity follows like the User-Agent always did,
        # credentials do not.
        await get(clients, own_url + "/away", {"Authorization": "Bearer s3cret"})
    finally:
        await clients.aclose()
    ours = f"storewatch/{__version__} (synthetic monitoring; no orders placed; agent a1)"
    assert [(path, h.get("x-storewatch-agent"), h.get("user-agent")) for path, h in seen] == [
        ("/same", "a1", ours), ("/", "a1", ours),
        ("/", "a1", "Mobile/1 (agent a1)"),
        ("/away", "a1", ours), ("other", "a1", ours),
    ]
    assert seen[3][1]["authorization"] == "Bearer s3cret"
    assert "authorization" not in seen[4][1]


async def test_clients_without_an_agent_send_no_agent_header(
        recorder: tuple[str, str, Seen]) -> None:
    own_url, _, seen = recorder
    clients = HttpClients("plain/1")
    try:
        await get(clients, own_url + "/")
    finally:
        await clients.aclose()
    assert "x-storewatch-agent" not in seen[0][1] and seen[0][1]["user-agent"] == "plain/1"


@pytest.mark.parametrize("where", ["check", "step"])
def test_a_check_cannot_set_the_agent_header(
        write_config: Callable[[str], Path], where: str) -> None:
    check = ("- {name: home, type: availability, headers: {X-Storewatch-Agent: x}}"
             if where == "check" else
             "- {name: flow, type: feature, steps: [{name: s, path: /, "
             "headers: {x-storewatch-agent: x}}]}")
    path = write_config(f"""
        sites:
          - name: shop
            base_url: https://shop.example
            checks:
              {check}
        """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "X-Storewatch-Agent is sent by the agent itself (agent.name)" in message
    assert message.startswith(f"{path}:5: sites[0].checks[0].") and "\n" not in message


async def test_storewatch_check_sends_agent_name_from_the_config(
        store: DemoStore, write_config: Callable[[str], Path], tmp_path: Path) -> None:
    """The real CLI: `agent.name` decides whether the demo store's per-agent fault hits."""
    store.set_faults(["server_error"], agents=["fra-1"])

    async def check(name: str) -> tuple[int, list[str], str]:
        path = write_config(f"""
            agent: {{name: {name}, location: fra, state_dir: {tmp_path / name}}}
            sites:
              - name: demo
                base_url: {store.url}
                checks:
                  - {{name: home, type: availability, path: /}}
            """, f"{name}.yaml")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "check", "-c", str(path), "--json", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        doc = json.loads(out)
        kinds = [f["kind"] for r in doc["results"] for f in r["findings"]]
        assert proc.returncode is not None
        return proc.returncode, kinds, err.decode()

    status, kinds, err = await check("fra-1")
    assert (status, kinds) == (1, ["site_down"]), err
    status, kinds, err = await check("nyc-1")
    assert (status, kinds) == (0, []), err
