"""The one Chromium all browser checks share, kept affordable on a shop's server.

- one browser process (launched on first use, system Chromium via Playwright), one fresh
  context per journey (no cookies or storage survive a run);
- at most ``max_pages`` journeys at once (a semaphore);
- after each journey the proportional memory (PSS, ``/proc/PID/smaps_rollup``) of the whole
  browser tree is read; past ``memory_limit`` the browser is restarted once no journey runs;
- a browser that crashed (disconnected) is relaunched for the next journey; one that does not
  close a context in time is killed and relaunched (hung);
- renderer processes orphaned by a killed browser are re-parented to this process (Linux child
  subreaper) and reaped, so a container whose PID 1 is the agent collects no zombies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from agent.config.schema import BrowserSettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

log = logging.getLogger(__name__)

CHROMIUM_ARGS: tuple[str, ...] = (
    "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--password-store=basic",
    "--disable-dev-shm-usage", "--metrics-recording-only", "--disable-breakpad",
)
"""No traffic of the browser's own (updates, sync, safe browsing), no GPU."""
CLOSE_TIMEOUT_S = 5.0
"""A context that does not close within this is taken as a hung browser."""
_PR_SET_CHILD_SUBREAPER = 36


class BrowserUnavailable(Exception):
    """The browser could not be started (one line, for the agent's own log and the result)."""


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """Proportional and resident memory of a process tree, in bytes."""

    pss: int
    rss: int
    processes: int


def tree_memory(root_pid: int) -> TreeMemory:
    """PSS (smaps_rollup) and RSS summed over ``root_pid`` and all its descendants."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return TreeMemory(0, 0, 0)
    pss = rss = count = 0
    for proc in procs:
        try:
            text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return TreeMemory(pss, rss, count)


def become_subreaper() -> bool:
    """Let orphaned descendants (a killed browser's renderers) re-parent to this process."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap(pids: set[int]) -> int:
    """Collect the exit status of those of ``pids`` that are exited children of ours, and of
    any exited Chromium helper re-parented to us (crashpad, zygote children)."""
    reaped = 0
    candidates = set(pids)
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE and "chrom" in child.name():
                    candidates.add(child.pid)
    for pid in candidates:
        with contextlib.suppress(ChildProcessError, OSError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            reaped += int(done == pid)
    return reaped


def _is_chromium_child(proc: psutil.Process) -> bool:
    try:
        return "chrom" in proc.name()
    except psutil.Error:
        return False


class BrowserRuntime:
    """The shared browser of one agent process. ``journey_context()`` is the way in."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_pages)
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._driver_pid: int | None = None
        self._known_pids: set[int] = set()
        self._in_flight = 0
        self.peak_in_flight = 0
        self._restart_wanted = ""
        self.launches = 0
        self.restarts: dict[str, int] = {"memory": 0, "crash": 0, "hang": 0}
        self.last_memory = TreeMemory(0, 0, 0)

    # -- the way in ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def journey_context(self) -> AsyncIterator[BrowserContext]:
        """A fresh browser context within the page limit; closed (or the browser killed) after."""
        from playwright.async_api import Error as PlaywrightError

        async with self._slots:
            browser = await self._ensure_browser()
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            context: BrowserContext | None = None
            finished = False
            try:
                try:
                    context = await self._new_context(browser)
                except PlaywrightError:  # the browser went away since it was checked: once more
                    self._browser = None
                    browser = await self._ensure_browser()
                    try:
                        context = await self._new_context(browser)
                    except PlaywrightError as exc:
                        raise BrowserUnavailable(f"the browser cannot open a page: {exc}") from None
                yield context
                finished = True
            finally:
                self._in_flight -= 1
                if context is not None:
                    healthy = await self._close_context(context)
                else:  # no context: did the browser refuse, or does it hang?
                    healthy = finished or await self._responds(browser)
                if not healthy and browser.is_connected():
                    self._hung(browser)
                await self._after_journey()

    @staticmethod
    async def _new_context(browser: Browser) -> BrowserContext:
        return await browser.new_context(ignore_https_errors=False, service_workers="block",
                                         viewport={"width": 1280, "height": 900})

    async def close(self) -> None:
        """Stop the browser and the Playwright driver."""
        async with self._lock:
            await self._stop_browser()
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None
            for _ in range(40):  # helpers exit a moment after the browser: collect them
                reap(self._known_pids)
                if not any(_is_chromium_child(p) for p in psutil.Process().children()):
                    break
                await asyncio.sleep(0.05)

    def browser_pid_tree(self) -> set[int]:
        """Every live process of the driver and browser tree (for tests and the bench)."""
        if self._driver_pid is None:
            return set()
        try:
            root = psutil.Process(self._driver_pid)
            return {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.Error:
            return set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def _ensure_browser(self) -> Browser:
        async with self._lock:
            if self._restart_wanted and self._in_flight == 0 and self._browser is not None:
                log.warning("restarting the browser: %s", self._restart_wanted)
                await self._stop_browser()
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._browser is not None:  # disconnected: crashed or killed
                self.restarts["crash"] += 1
                log.warning("the browser was gone (crashed); starting a new one")
                await self._stop_browser()
            return await self._launch()

    async def _launch(self) -> Browser:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        become_subreaper()
        if self._playwright is None:
            before = {p.pid for p in psutil.Process().children()}
            self._playwright = await async_playwright().start()
            after = [p for p in psutil.Process().children() if p.pid not in before]
            self._driver_pid = after[0].pid if after else None
        args = list(CHROMIUM_ARGS)
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox as root
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=str(self.settings.executable_path), headless=True, args=args,
                timeout=self.settings.launch_timeout * 1000, handle_sigint=False,
                handle_sigterm=False, handle_sighup=False)
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BrowserUnavailable(
                f"cannot start Chromium at {self.settings.executable_path}: {first}") from None
        self.launches += 1
        self._restart_wanted = ""
        self._known_pids |= self.browser_pid_tree()
        return self._browser

    async def _stop_browser(self) -> None:
        browser, self._browser = self._browser, None
        pids = self.browser_pid_tree() - ({self._driver_pid} if self._driver_pid else set())
        self._known_pids |= pids
        if browser is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await browser.close()
            except Exception:  # hung or already gone: kill what is left below
                log.warning("the browser did not close in %gs; killing it", CLOSE_TIMEOUT_S)
        self._kill(pids)
        reap(self._known_pids)
        self._known_pids = {p for p in self._known_pids if psutil.pid_exists(p)}

    @staticmethod
    def _kill(pids: set[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def _close_context(self, context: BrowserContext) -> bool:
        """Close a journey's context; False when the browser did not manage it in time."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await context.close()
        except Exception:
            return False
        return True

    @staticmethod
    async def _responds(browser: Browser) -> bool:
        """Whether the browser answers a trivial CDP command in time."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                session = await browser.new_browser_cdp_session()
                await session.send("Browser.getVersion")
                await session.detach()
        except Exception:
            return False
        return True

    def _hung(self, browser: Browser) -> None:
        """Kill a browser that stopped answering; the next journey starts a new one."""
        self.restarts["hang"] += 1
        log.warning("the browser did not answer within %gs: it hangs; killing it",
                    CLOSE_TIMEOUT_S)
        pids = self.browser_pid_tree() - {self._driver_pid or -1}
        self._known_pids |= pids
        self._kill(pids)
        if self._browser is browser:
            self._browser = None  # the next journey starts a new one (the driver may not know yet)

    async def _after_journey(self) -> None:
        reap(self._known_pids)
        tree = self.browser_pid_tree()
        self._known_pids |= tree
        if self._driver_pid is None:
            return
        self.last_memory = await asyncio.to_thread(tree_memory, self._driver_pid)
        if self.last_memory.pss > int(self.settings.memory_limit) and not self._restart_wanted:
            self.restarts["memory"] += 1
            self._restart_wanted = (f"browser tree uses {self.last_memory.pss >> 20} MiB PSS, "
                                    f"over its {int(self.settings.memory_limit) >> 20} MiB limit")


_shared: BrowserRuntime | None = None
_shared_settings: BrowserSettings | None = None


def configure(settings: BrowserSettings) -> None:
    """Use ``settings`` for the shared runtime (takes effect when it is next started)."""
    global _shared_settings
    _shared_settings = settings


def shared_runtime() -> BrowserRuntime:
    """The process's browser runtime (created on first use, browser launched lazily)."""
    global _shared
    if _shared is None:
        _shared = BrowserRuntime(_shared_settings or BrowserSettings())
    return _shared


async def close_shared_runtime() -> None:
    """Stop the shared browser, if one was started."""
    global _shared
    runtime, _shared = _shared, None
    if runtime is not None:
        await runtime.close()
