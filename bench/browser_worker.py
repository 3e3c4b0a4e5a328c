"""One bench process: N journeys of one kind against one shop, then a JSON line.

``python -m bench.browser_worker MODE URL N [PAGES] [SECONDS]``; MODE is ``agent`` (the browser
check through the agent's probe and shared runtime), ``http`` (the same journey as HTTP steps)
or ``bare`` (a plain Playwright script doing the journey). PAGES journeys run at once; with
SECONDS the worker runs journeys back to back for that long instead of N. ``$BENCH_SHOP``
picks the shop and its journey: ``demo`` (default; the JS demo store,
config/examples/demo-browser.yaml) or ``evershop`` (the real storefront of tests/realshop:
the browser journey of tests/realshop/test_evershop_browser.py, the HTTP checkout steps of
config/examples/evershop.yaml). ``$BENCH_CHROMIUM_ARGS`` (space-separated) adds Chromium
flags to both the agent's and the bare script's launch, for flag experiments.

A sampler thread reads the PSS of this process's whole tree (``smaps_rollup``) every
``$BENCH_PSS_INTERVAL`` s (default 0.1; 0: no sampler, for CPU runs: reading smaps_rollup costs
CPU itself) and keeps the per-process split (Python, driver, browser, renderers, GPU, network
service, other utilities) of the peak sample. Each sample also holds the tree's private PSS
(``Pss_Anon`` + ``Pss_Shmem``): heap and Chromium's shared memory live only in this tree, so
unlike file-backed pages (the Chromium binary, fonts) no other process on the host can lower it
by mapping the same file — the soak's growth measure on a host that is not quiet. The caller
measures CPU with ``RUSAGE_CHILDREN`` around this process (the whole tree is reaped into it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from agent.browser.runtime import BrowserRuntime, become_subreaper, close_shared_runtime
from agent.config.schema import Config
from agent.httpclient import HttpClients
from agent.probes import PROBES
from agent.probes.base import ProbeContext, run_guarded

if TYPE_CHECKING:
    from playwright.async_api import Page

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "examples" / "demo-browser.yaml"
EVERSHOP_EXAMPLE = ROOT / "config" / "examples" / "evershop.yaml"
CHROMIUM = "/usr/bin/chromium"
SKU = "DS-TEST-SKU"
SHOP = os.environ.get("BENCH_SHOP", "demo")
EXTRA_ARGS = os.environ.get("BENCH_CHROMIUM_ARGS", "").split()

HTTP_STEPS: list[dict[str, Any]] = [
    {"name": "home", "path": "/"},
    {"name": "products", "path": "/api/products",
     "expect": {"count": [{"json": "$.products[*]", "min": 1}]}},
    {"name": "add-to-cart", "method": "POST", "path": "/api/cart/add",
     "json": {"sku": SKU, "qty": 1}, "expect": {"json": [{"path": "$.items_qty", "min": 1}]}},
    {"name": "cart", "path": "/cart"},
    {"name": "cart-api", "path": "/api/cart",
     "expect": {"count": [{"json": "$.lines[*]", "min": 1}]}},
    {"name": "checkout", "path": "/checkout"},
    {"name": "checkout-api", "path": "/api/checkout",
     "expect": {"count": [{"json": "$.payment[*]", "min": 1}]}},
]


def process_role(proc: psutil.Process) -> str:
    """What one process of the tree is: python, driver, browser, renderer, gpu, network, ..."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "gone"
    if proc.pid == os.getpid():
        return "python"
    joined = " ".join(cmd)
    if "chrom" not in (cmd[0] if cmd else ""):
        return "driver" if "node" in joined or "playwright" in joined else "other"
    kind = next((a.split("=", 1)[1] for a in cmd if a.startswith("--type=")), "browser")
    if kind == "utility":
        sub = next((a.split("=", 1)[1] for a in cmd if a.startswith("--utility-sub-type=")), "")
        return {"network.mojom.NetworkService": "network",
                "storage.mojom.StorageService": "storage"}.get(sub, f"utility:{sub}")
    return {"gpu-process": "gpu"}.get(kind, kind)


def rollup_fields(text: str) -> dict[str, int]:
    """The byte counts of one ``/proc/PID/smaps_rollup`` text, by field (``Pss``,
    ``Pss_Anon``, ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def tree_split(cpu: dict[int, tuple[str, float]] | None = None,
               private: list[int] | None = None) -> dict[str, int]:
    """PSS in bytes of this process's tree, summed per process role (``process_role``);
    ``cpu`` gets each process's role and CPU seconds so far; ``private`` (one element) gets
    the tree's ``Pss_Anon + Pss_Shmem`` in bytes."""
    me = psutil.Process()
    try:
        procs = [me, *me.children(recursive=True)]
    except psutil.Error:
        procs = [me]
    split: dict[str, int] = {}
    for proc in procs:
        try:
            text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
            times = proc.cpu_times()
        except (OSError, psutil.Error):
            continue
        fields = rollup_fields(text)
        pss = fields.get("Pss", 0)
        if private is not None:
            private[0] += fields.get("Pss_Anon", 0) + fields.get("Pss_Shmem", 0)
        role = process_role(proc)
        split[role] = split.get(role, 0) + pss
        split[role + "#"] = split.get(role + "#", 0) + 1
        if cpu is not None:
            cpu[proc.pid] = (role, times.user + times.system)
    return split


class PeakPss:
    """Samples the PSS of this process tree until stopped; keeps the peak (and its per-process
    split) and the samples."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_split: dict[str, int] = {}
        self.cpu: dict[int, tuple[str, float]] = {}
        """Per process: its role and CPU seconds at the last sample that saw it."""
        self.samples: list[tuple[float, int, int]] = []
        """``(seconds since start, tree PSS, tree private PSS)`` in bytes."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if interval > 0:
            self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.interval):
            private = [0]
            split = tree_split(self.cpu, private)
            pss = sum(v for k, v in split.items() if not k.endswith("#"))
            if pss > self.peak:
                self.peak, self.peak_split = pss, split
            self.samples.append((time.monotonic() - start, pss, private[0]))

    def cpu_split(self) -> dict[str, float]:
        """CPU seconds per process role, as far as the samples saw them."""
        out: dict[str, float] = {}
        for role, seconds in self.cpu.values():
            out[role] = round(out.get(role, 0.0) + seconds, 2)
        return out

    def stop(self) -> None:
        """End sampling."""
        self._stop.set()
        if self.interval > 0:
            self._thread.join()


def _evershop_config(url: str, mode: str, pages: int) -> Config:
    """EverShop: the tests' browser journey, or the example's HTTP checkout steps."""
    import yaml

    if mode == "http":
        example = yaml.safe_load(EVERSHOP_EXAMPLE.read_text())["sites"][0]
        check = next(c for c in example["checks"] if c["name"] == "checkout")
    else:
        from tests.realshop.test_evershop_browser import JOURNEY

        check = JOURNEY
    return Config.model_validate({
        "agent": {"state_dir": "/nonexistent-bench-state",
                  "browser": {"executable_path": CHROMIUM, "max_pages": pages}},
        "sites": [{"name": "evershop", "base_url": url, "checks": [check]}]})


def _config(url: str, mode: str, pages: int) -> Config:
    import yaml

    if SHOP == "evershop":
        return _evershop_config(url, mode, pages)
    raw = yaml.safe_load(EXAMPLE.read_text())
    site = raw["sites"][0]
    site["base_url"] = url
    journey = next(c for c in site["checks"] if c["name"] == "journey")
    if mode == "http":
        site["checks"] = [{"name": "journey", "type": "checkout", "steps": HTTP_STEPS}]
    else:
        site["checks"] = [journey]
    raw["agent"] = {"state_dir": "/nonexistent-bench-state",
                    "browser": {"executable_path": CHROMIUM, "max_pages": pages}}
    return Config.model_validate(raw)


async def _agent(url: str, mode: str, n: int, pages: int, seconds: float) -> dict[str, Any]:
    from agent.browser import runtime as rt

    config = _config(url, mode, pages)
    rt.CHROMIUM_ARGS = (*rt.CHROMIUM_ARGS, *EXTRA_ARGS)
    rt.configure(config.agent.browser)
    site = config.sites[0]
    spec = site.checks[0]
    clients = HttpClients("storewatch-bench")
    ctx = ProbeContext(clients, site, 60.0)
    done = failed = 0
    per_journey: list[float] = []
    end = time.monotonic() + seconds if seconds else None

    async def one() -> None:
        nonlocal done, failed
        start = time.perf_counter()
        result = await run_guarded(PROBES[spec.type], spec, ctx)
        per_journey.append(time.perf_counter() - start)
        done += 1
        failed += int(not result.success)

    async def lane(count: int) -> None:
        for _ in range(count):
            await one()
        while end is not None and time.monotonic() < end:
            await one()

    per_lane = 0 if seconds else max(1, n // pages)
    await asyncio.gather(*(lane(per_lane) for _ in range(pages)))
    runtime: BrowserRuntime | None = rt._shared
    restarts = dict(runtime.restarts) if runtime is not None else {}
    await close_shared_runtime()
    await clients.aclose()
    return {"journeys": done, "failed": failed, "restarts": restarts,
            "journey_s": sorted(per_journey)[len(per_journey) // 2] if per_journey else 0.0}


async def _evershop_journey(page: Page, url: str) -> None:
    """tests/realshop/test_evershop_browser.py's journey, by hand: product, variant, add to
    cart (mini cart), cart, checkout, address until the shipping method shows."""
    from tests.realshop.evershop import TEST_PRODUCT_PATH

    add = page.locator('button:has-text("Add to cart")')
    await page.goto(url + TEST_PRODUCT_PATH)
    await add.first.wait_for()
    await page.locator('button:has-text("White")').first.click()
    await page.wait_for_url("**color=**")
    await add.first.click()
    await page.locator(".minicart__items__container").first.wait_for()
    await page.goto(url + "/cart")
    await page.get_by_text("Proceed to checkout").first.wait_for()
    await page.goto(url + "/checkout")
    postcode = page.locator("input[name='shippingAddress.postcode']")
    await postcode.wait_for()
    for box, option in (("Country", "United States"), ("Province", "California")):
        await page.locator(f'button[role=combobox]:has-text("{box}")').first.click()
        await page.locator(f'[role=option]:has-text("{option}")').first.click()
    await postcode.fill("90001")
    await page.get_by_text("Flat rate").first.wait_for(timeout=15000)


async def _demo_journey(page: Page, url: str) -> None:
    """config/examples/demo-browser.yaml's journey, by hand."""
    await page.goto(url + "/")
    button = page.locator(f"li.product-item[data-sku='{SKU}'] button.tocart")
    await button.click()
    await page.get_by_text("to your shopping cart").wait_for()
    await page.goto(url + "/cart")
    await page.locator("tr.cart-item").first.wait_for()
    await page.locator("a.action.checkout").click()
    await page.locator(".payment-method").first.wait_for()


async def _bare(url: str, n: int, pages: int) -> dict[str, Any]:
    """The journey as a plain Playwright script: what anyone would write by hand."""
    from playwright.async_api import async_playwright

    steps = _evershop_journey if SHOP == "evershop" else _demo_journey
    done = 0
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox", "--disable-gpu", *EXTRA_ARGS])

        async def journey() -> None:
            nonlocal done
            context = await browser.new_context()
            page = await context.new_page()
            await steps(page, url)
            await context.close()
            done += 1

        async def lane(count: int) -> None:
            for _ in range(count):
                await journey()

        await asyncio.gather(*(lane(max(1, n // pages)) for _ in range(pages)))
        await browser.close()
    return {"journeys": done, "failed": 0, "restarts": {}}


def reap_descendants(timeout: float = 15.0) -> None:
    """Wait for every process re-parented to this one (Chromium's zygote, renderers and
    crashpad handlers outlive the browser by a moment); kill what is left after ``timeout``.
    Only then is the whole tree's CPU in the caller's ``RUSAGE_CHILDREN``: an orphan that
    init reaps takes its CPU (for a zygote: every renderer's) out of the measurement."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() > deadline:
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    child.kill()
            deadline = float("inf")
        time.sleep(0.05)


def main() -> None:
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    become_subreaper()  # agent and bare alike: orphans are reaped here, counted in the tree
    pages = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    sampler = PeakPss(float(os.environ.get("BENCH_PSS_INTERVAL", "0.1")))
    start = time.perf_counter()
    if mode == "bare":
        out = asyncio.run(_bare(url, n, pages))
    else:
        out = asyncio.run(_agent(url, mode, n, pages, seconds))
    out["wall_s"] = time.perf_counter() - start
    sampler.stop()
    reap_descendants()
    own = os.times()
    out["self_cpu_s"] = own.user + own.system
    out["peak_pss"] = sampler.peak
    out["peak_split"] = sampler.peak_split
    out["cpu_split"] = sampler.cpu_split()
    out["pss_samples"] = sampler.samples[:: max(1, len(sampler.samples) // 400)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
