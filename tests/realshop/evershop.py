"""A real EverShop storefront for tests: installed from npm, run on loopback, faults on demand.

Python API (used by tests/realshop and the browser checks)::

    from tests.realshop.evershop import running_evershop

    with running_evershop() as shop:          # install/build once (cached), start PG + shop
        shop.base_url                          # "http://127.0.0.1:<port>"
        shop.admin_token()                     # Bearer token of the seeded admin user
        shop.admin_api("PATCH", f"/api/products/{uuid}", {"status": 0})
        shop.set_faults(latency_ms=4000)       # see FAULTS; takes effect on the next request
        shop.clear_faults()
        shop.set_published("CUP-001-WHT", False)
        shop.stop(); shop.start()              # the shop process only (PostgreSQL stays up)

or the pytest fixtures ``evershop`` (one shop per session) and ``evershop_shop`` (the same shop,
healthy again after each test) from tests/realshop/conftest.py.

What it installs and where: ``@evershop/evershop`` EVERSHOP_VERSION (+ ``concat-stream``, which
2.2.1 imports without declaring) with ``npm install``, then ``evershop build``, in
``$STOREWATCH_TEST_CACHE/evershop-<version>`` (default /var/cache/storewatch-tests, or
~/.cache/storewatch-tests when that is not writable), outside the checkout; a complete build
is reused (marker file), a concurrent run waits on a lock file.
Each ``running_evershop()`` makes a fresh PostgreSQL cluster (tests/pgcluster.py), starts
``evershop start`` in its own process group with ``NODE_OPTIONS=--require evershop_preload.cjs``
(loopback only, no outbound traffic, shop-level faults read from a JSON file), creates the
admin user, seeds the demo catalog (15 products in "Accessories"), a shipping zone with a flat
rate and Cash on Delivery through the admin REST API.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.pgcluster import PostgresCluster, _alive, free_port

EVERSHOP_VERSION = "2.2.1"


def _cache_root() -> Path:
    """$STOREWATCH_TEST_CACHE, else /var/cache/storewatch-tests (root, as in CI), else
    ~/.cache/storewatch-tests."""
    if "STOREWATCH_TEST_CACHE" in os.environ:
        return Path(os.environ["STOREWATCH_TEST_CACHE"])
    system = Path("/var/cache/storewatch-tests")
    if os.access(system if system.exists() else system.parent, os.W_OK):
        return system
    return Path.home() / ".cache" / "storewatch-tests"


CACHE_ROOT = _cache_root()
PRELOAD = Path(__file__).with_name("evershop_preload.cjs")
COMPLETE = ".storewatch-complete"

ADMIN_EMAIL = "admin@storewatch.test"
ADMIN_PASSWORD = "Storewatch-test-1"  # a throw-away shop on loopback, never a real secret
CATEGORY_PATH = "/accessories"
"""The seeded category listing (15 products)."""
TEST_PRODUCT_SKU = "CUP-001-WHT"
TEST_PRODUCT_PATH = "/ceramic-coffee-cup-white"
SEARCH_KEYWORD = "cup"

FAULTS = {
    "latency_ms": "every page and API request waits this many milliseconds first",
    "checkout_500": "/checkout* and POST /api/cart* (add to cart) answer 500",
    "search_broken": "/search finds nothing (the keyword is replaced before the shop sees it)",
    "corrupt_listing": "this path (e.g. '/accessories'): product cards lose their class (a raw "
                       "template attribute), template error text and a 404 stylesheet link "
                       "are injected",
    "max_in_flight": "more concurrent page/API requests than this answer 500 'database is "
                     "locked' (static assets are not counted)",
    "js_bundle": "browser-only: the shop's own frontStore bundles are cut short",
    "js_error": "browser-only: a script in every page makes add-to-cart throw",
    "skimmer_dynamic": "browser-only: cart/checkout pages inject a script from "
                       "http://localhost:PORT at run time",
    "slow_render": "browser-only: product and other catalog pages carry an anti-flicker tag "
                   "that hides the page for 6 s (its largest paint comes 6 s late)",
}
"""Faults of ``EverShop.set_faults`` (implemented in evershop_preload.cjs)."""

START_TIMEOUT = 180.0
NPM_TIMEOUT = 900.0


class EverShopError(RuntimeError):
    """Installing or starting the shop failed; the message carries the step and log tail."""


def app_dir(version: str = EVERSHOP_VERSION) -> Path:
    """The cache directory of one EverShop version's install + build."""
    return CACHE_ROOT / f"evershop-{version}"


def _run(cmd: list[str], cwd: Path, env: dict[str, str], step: str, timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise EverShopError(f"{step} failed ({proc.returncode}) in {cwd}: "
                            f"{(proc.stderr + proc.stdout).strip()[-3000:]}")


def ensure_installed(version: str = EVERSHOP_VERSION) -> Path:
    """Install and build EverShop ``version`` in the cache unless a complete build is there."""
    target = app_dir(version)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f"evershop-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = target / COMPLETE
        if marker.exists() and marker.read_text().strip() == version:
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        (target / "package.json").write_text(json.dumps({
            "name": "storewatch-test-evershop", "private": True, "type": "module",
            "dependencies": {"@evershop/evershop": version, "concat-stream": "^2.0.0"},
        }, indent=2))
        env = {**os.environ, "SUPPRESS_NO_CONFIG_WARNING": "1"}
        _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], target, env,
             "npm install", NPM_TIMEOUT)
        with PostgresCluster() as pg:  # the build reads the settings table once
            _run([str(target / "node_modules/.bin/evershop"), "build"], target,
                 {**env, **_db_env(pg)}, "evershop build", NPM_TIMEOUT)
        marker.write_text(version + "\n")
        return target


def _db_env(pg: PostgresCluster) -> dict[str, str]:
    return {"DB_HOST": "127.0.0.1", "DB_PORT": str(pg.port), "DB_NAME": pg.database,
            "DB_USER": pg.user, "DB_PASSWORD": "unused-trust-auth", "DB_SSLMODE": "disable"}


class EverShop:
    """One running EverShop (its PostgreSQL, its process group, its fault file)."""

    def __init__(self, app: Path, pg: PostgresCluster, work: Path) -> None:
        self.app = app
        self.pg = pg
        self.work = work
        self.port = free_port()
        self.fault_file = work / "faults.json"
        self.log_file = work / "evershop.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.unpublished: set[str] = set()
        """SKUs unpublished through ``set_published`` and not published again."""
        self._token: str | None = None
        self._env = {
            **os.environ, **_db_env(pg),
            "PORT": str(self.port), "EVERSHOP_HOME_URL": self.base_url,
            "NODE_OPTIONS": f"--require {PRELOAD}", "STOREWATCH_FAULT_FILE": str(self.fault_file),
            "SUPPRESS_NO_CONFIG_WARNING": "1",
            **{name: secrets.token_hex(24) for name in (
                "JWT_ADMIN_SECRET", "JWT_ADMIN_REFRESH_SECRET", "JWT_CUSTOMER_SECRET",
                "JWT_CUSTOMER_REFRESH_SECRET", "ORDER_TRACKING_TOKEN_SECRET")},
        }
        self.clear_faults()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # --- process ------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start ``evershop start`` (own process group) and wait until the home page is 200."""
        if self.running:
            return
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.app / "node_modules/.bin/evershop"), "start"], cwd=self.app,
                env=self._env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EverShopError(f"evershop start exited {self.proc.returncode}: "
                                    f"{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise EverShopError(f"evershop did not answer within {timeout:g}s: {self.log_tail()}")

    @property
    def running(self) -> bool:
        """True while the shop's main process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the shop's whole process group (SIGTERM, SIGKILL after 15 s)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        deadline = time.monotonic() + 15
        while _group_alive(pgid) and time.monotonic() < deadline:  # children (events, cron)
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the shop's stdout/stderr log."""
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cli(self, *args: str, timeout: float = 300) -> None:
        """Run an ``evershop`` subcommand against this shop's database."""
        _run([str(self.app / "node_modules/.bin/evershop"), *args], self.app, self._env,
             f"evershop {' '.join(args[:1])}", timeout)

    # --- faults -------------------------------------------------------------------------
    def set_faults(self, **faults: Any) -> None:
        """Replace the active faults (names in ``FAULTS``); effective on the next request."""
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown EverShop fault(s): {', '.join(sorted(unknown))}")
        tmp = self.fault_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(self.fault_file)

    def refusals(self) -> list[dict[str, Any]]:
        """Requests the ``max_in_flight`` fault refused, each with the requests in flight then."""
        log = self.fault_file.with_name(self.fault_file.name + ".refused")
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def clear_faults(self) -> None:
        """No faults: the shop answers as built."""
        self.set_faults()

    # --- admin API ------------------------------------------------------------------------
    def admin_token(self) -> str:
        """A Bearer token for the admin REST API (``POST /api/user/tokens``)."""
        if self._token is None:
            data = self._api("POST", "/api/user/tokens",
                             {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, token=None)
            self._token = str(data["accessToken"])
        return self._token

    def admin_api(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call the admin REST API; returns the answer's ``data``; EverShopError if not 2xx."""
        return self._api(method, path, payload, token=self.admin_token())

    def _api(self, method: str, path: str, payload: dict[str, Any] | None,
             token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(5):
            resp = httpx.request(method, self.base_url + path, json=payload, headers=headers,
                                 timeout=60)
            if resp.status_code != 429:
                break
            time.sleep(2 * (attempt + 1))  # the API allows 120 requests/min
        if resp.status_code >= 300:
            raise EverShopError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        body = resp.json() if resp.content else {}
        return body.get("data", body) if isinstance(body, dict) else body

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query on the shop's database (psql, tab-separated, no header)."""
        proc = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", self.pg.user, "-d",
             self.pg.database, "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise EverShopError(f"psql failed: {proc.stderr.strip()}")
        return [line.split("\t") for line in proc.stdout.splitlines() if line]

    def product_uuid(self, sku: str) -> str:
        """The uuid the admin API uses for the product ``sku``."""
        rows = self.sql(f"SELECT uuid FROM product WHERE sku = '{sku.replace(chr(39), '')}'")
        if not rows:
            raise EverShopError(f"no product with SKU {sku}")
        return rows[0][0]

    def skus(self) -> list[str]:
        """SKUs of every product in the shop."""
        return [row[0] for row in self.sql("SELECT sku FROM product ORDER BY sku")]

    def set_published(self, sku: str, published: bool) -> None:
        """Publish or unpublish one product (``PATCH /api/products/<uuid>`` status).

        The payload repeats the product's category: EverShop's payload schema defaults a
        missing ``category_id`` to null, which would take the product (and its variant
        siblings) out of their category.
        """
        rows = self.sql("SELECT uuid, coalesce(category_id::text, '') FROM product "
                        f"WHERE sku = '{sku.replace(chr(39), '')}'")
        if not rows:
            raise EverShopError(f"no product with SKU {sku}")
        uuid, category = rows[0]
        self.admin_api("PATCH", f"/api/products/{uuid}",
                       {"status": 1 if published else 0, "category_id": category or None})
        if published:
            self.unpublished.discard(sku)
        else:
            self.unpublished.add(sku)

    # --- setup ----------------------------------------------------------------------------
    def provision(self) -> None:
        """Admin user, demo catalog, a shipping zone with a flat rate, Cash on Delivery."""
        self.cli("user:create", "--name", "Storewatch Admin", "--email", ADMIN_EMAIL,
                 "--password", ADMIN_PASSWORD)
        self.cli("seed", "--all")
        zone = self.admin_api("POST", "/api/shippingZones",
                              {"name": "Everywhere US", "countries": ["US"]})
        zone_id = str(zone.get("uuid") or zone.get("shipping_zone_id") or zone["id"])
        method = self.admin_api("POST", "/api/shippingProviders/core/methods",
                                {"name": "Flat rate", "is_enabled": True})
        method_id = str(method.get("uuid") or method.get("shipping_method_id") or method["id"])
        self.admin_api("POST", "/api/shippingProviders/core/rates",
                       {"method_id": method_id, "zone_id": zone_id, "is_enabled": True,
                        "cost": 5})
        self.admin_api("POST", "/api/settings", {"codPaymentStatus": 1})

    def close(self) -> None:
        """Stop the shop and its PostgreSQL; remove the work directory."""
        try:
            self.stop()
        finally:
            self.pg.stop()
            shutil.rmtree(self.work, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z" and _alive(int(stat.parent.name)):
            return True
    return False


@contextlib.contextmanager
def running_evershop() -> Iterator[EverShop]:
    """A provisioned, healthy EverShop on loopback; everything stopped on exit."""
    app = ensure_installed()
    pg = PostgresCluster().start()
    shop = EverShop(app, pg, Path(tempfile.mkdtemp(prefix="storewatch-evershop-")))
    try:
        shop.start()
        shop.provision()
        yield shop
    finally:
        shop.close()
