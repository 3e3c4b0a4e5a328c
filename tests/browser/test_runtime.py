"""The shared browser under stress, with the real Chromium: page limit, memory ceiling,
crash and hang recovery, zombie reaping, and a fresh context (no state) per journey."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import psutil

from agent.browser.runtime import BrowserRuntime, tree_memory
from agent.config.schema import BrowserSettings
from agent.demo.storefront import DemoStore
from tests.browser.conftest import CHROMIUM


def chromium_pids(runtime: BrowserRuntime) -> list[int]:
    pids = []
    for pid in runtime.browser_pid_tree():
        try:
            if "chrom" in psutil.Process(pid).name():
                pids.append(pid)
        except psutil.Error:
            pass
    return pids


def browser_main_pid(runtime: BrowserRuntime) -> int:
    """The Chromium process the driver started (the others are its children; a renderer of
    the last journey may exit while the tree is read: it is left out)."""
    parents: dict[int, int] = {}
    for pid in chromium_pids(runtime):
        with contextlib.suppress(psutil.Error):
            parents[pid] = psutil.Process(pid).ppid()
    mains = [p for p, parent in parents.items() if parent not in parents]
    assert len(mains) == 1, mains
    return mains[0]


def zombie_children() -> list[int]:
    zombies = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):  # exited and reaped meanwhile
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
    return zombies


async def visit(runtime: BrowserRuntime, url: str) -> str:
    async with runtime.journey_context() as context:
        page = await context.new_page()
        await page.goto(url + "/", timeout=20_000)
        return await page.title()


async def test_pages_are_bounded_and_contexts_fresh(js_store: DemoStore) -> None:
    runtime = BrowserRuntime(BrowserSettings(executable_path=CHROMIUM, max_pages=1))
    try:
        titles = await asyncio.gather(*(visit(runtime, js_store.url) for _ in range(3)))
        assert all("Demo Outfitters" in t for t in titles)
        assert runtime.peak_in_flight == 1
        assert runtime.launches == 1  # one shared browser for every journey
        async with runtime.journey_context() as context:
            assert await context.cookies() == []  # the earlier journeys' session is gone
    finally:
        await runtime.close()


async def test_memory_ceiling_restarts_the_browser(js_store: DemoStore) -> None:
    runtime = BrowserRuntime(BrowserSettings(executable_path=CHROMIUM, memory_limit=1))
    try:
        await visit(runtime, js_store.url)
        assert runtime.restarts["memory"] == 1
        assert runtime.last_memory.pss > 0
        first = browser_main_pid(runtime)
        await visit(runtime, js_store.url)  # restarted before this journey
        assert runtime.launches == 2
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
    finally:
        await runtime.close()


async def test_crashed_browser_is_replaced_and_its_processes_reaped(
        js_store: DemoStore) -> None:
    runtime = BrowserRuntime(BrowserSettings(executable_path=CHROMIUM))
    try:
        await visit(runtime, js_store.url)
        old = set(chromium_pids(runtime))
        os.kill(browser_main_pid(runtime), signal.SIGKILL)
        for _ in range(100):  # the driver notices the disconnect
            if runtime._browser is None or not runtime._browser.is_connected():
                break
            await asyncio.sleep(0.1)
        assert "Demo Outfitters" in await visit(runtime, js_store.url)
        assert runtime.restarts["crash"] == 1
        assert runtime.launches == 2
        for _ in range(50):  # orphaned renderers exit and are reaped (we are their subreaper)
            if not any(p in zombie_children() for p in old) and \
                    not any(psutil.pid_exists(p) for p in old):
                break
            await visit(runtime, js_store.url)
        assert not [p for p in old if psutil.pid_exists(p)], "old browser processes remain"
    finally:
        await runtime.close()
    assert not zombie_children()


async def test_hung_browser_is_killed_and_replaced(js_store: DemoStore) -> None:
    runtime = BrowserRuntime(BrowserSettings(executable_path=CHROMIUM))
    try:
        await visit(runtime, js_store.url)
        main = browser_main_pid(runtime)
        os.kill(main, signal.SIGSTOP)  # alive but answering nothing
        try:
            async with asyncio.timeout(3):
                await visit(runtime, js_store.url)
        except TimeoutError:
            pass  # the check's deadline; closing its context then finds the browser hung
        assert runtime.restarts["hang"] == 1
        assert "Demo Outfitters" in await visit(runtime, js_store.url)
        assert runtime.launches == 2
    finally:
        await runtime.close()


def test_tree_memory_reads_pss_of_a_process_tree() -> None:
    mine = tree_memory(os.getpid())
    assert mine.processes >= 1
    assert 0 < mine.pss <= mine.rss
    assert tree_memory(2**22 + 7).processes == 0
    assert Path("/proc/self/smaps_rollup").exists()
