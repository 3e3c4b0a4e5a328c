"""The daemon hides its start-up heap from the garbage collector; a reload lets it see again."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from agent.demo.storefront import DemoStore
from agent.service import Agent, load


class _Node:
    me: _Node | None = None


async def test_started_daemon_freezes_and_reload_collects_what_became_garbage(
        store: DemoStore, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"agent: {{listen: '127.0.0.1:0', state_dir: {tmp_path}/state}}\n"
                    f"sites:\n  - name: shop\n    base_url: {store.url}\n"
                    "    checks: [{name: home}]\n")
    node = _Node()
    node.me = node  # a cycle: only the cyclic collector can free it
    ref = weakref.ref(node)
    agent = Agent(path, load(path))
    task = asyncio.create_task(agent.serve(freeze_heap=True))
    try:
        for _ in range(100):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.02)
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None  # frozen: a full collection does not look at it

        assert agent.reload()
        assert ref() is None  # reload unfroze, collected, then froze again
        assert gc.get_freeze_count() > 0
    finally:
        agent.stop()
        await task
        gc.unfreeze()
