"""Property-based fuzzing (hypothesis, bounded): the config loader only ever returns a Config or
raises a one-line ConfigError; a config that validates runs one check of the demo store without
a traceback; the availability probe turns any body into a ProbeResult."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.loader import load_config_text
from agent.config.schema import Config
from agent.errors import ConfigError
from agent.httpclient import HttpClients
from agent.probes.availability import probe_availability
from agent.probes.base import ProbeContext, run_guarded
from tests.faults.hostile import HostileServer, hostile_server

BOUNDED = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])

TOKENS = ["sites", "name", "checks", "base_url", "agent", "defaults", "tls", "interval",
          "timeout", "path", "headers", "selector", "levels", "type", "availability", "shop",
          "http://shop.example", "https://", "${", "}", "${HOME}", "${cred:x}", "$$", "30s",
          "-1s", "1h30m", "5 parsecs", ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "&a ",
          "*a", "!!str ", "!!python/name:os.system", "|", ">", "'", '"', "#", "%YAML 1.2",
          "---", "...", "\n", "\n  ", "\n    ", "\t", " ", "null", "true", "~", "0x1F", "1e999",
          "\x00", "\ufeff", "é", "?", "@", "`", "<<: *a"]


def load(text: str) -> None:
    try:
        config = load_config_text(text, Config, filename="fuzz.yaml", env={"HOME": "/root"})
    except ConfigError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert isinstance(config, Config)


@BOUNDED
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_yaml_ish_text_never_escapes_as_another_exception(text: str) -> None:
    load(text)


@BOUNDED
@given(st.text(max_size=300))
def test_any_text_never_escapes_as_another_exception(text: str) -> None:
    load(text)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["30s", "1m", "-5s", "0", "2d",
                                                           "https://shop.example", "/", "home",
                                                           "GET", "${HOME}", "10MB"]))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, anything)


check = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["home", "cart", "Bad Name", ""]))},
    optional={"type": maybe(st.just("availability")), "path": maybe(st.just("/")),
              "timeout": maybe(st.just("5s")), "interval": maybe(st.just("1m")),
              "expect_status": maybe(st.just([200, 301])), "headers": maybe(st.just({"A": "b"})),
              "selector": maybe(st.sampled_from(["main", "div > p", "::", "[["])),
              "body_matches": maybe(st.sampled_from([["a+"], ["("], ["(?P<x>"]])),
              "max_body_bytes": maybe(st.sampled_from(["1KiB", "2MB", 0, -1])),
              "role": maybe(st.sampled_from(["home", "page", "x"])),
              "latency_threshold": maybe(st.just("2s"))})
site = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["shop", "shop-2"])),
     "base_url": maybe(st.sampled_from(["https://shop.example", "ftp://x", "http://[::1"])),
     "checks": maybe(st.lists(check, max_size=3))},
    optional={"tls": maybe(st.fixed_dictionaries({}, optional={"verify": maybe(st.booleans()),
                                                              "warn_days": maybe(st.just(7))})),
              "levels": maybe(st.just({"slow_response": 2})),
              "plan": maybe(st.sampled_from(["on_demand", "gold", "x"])),
              "interval": maybe(st.just("30s"))})
config = st.fixed_dictionaries(
    {"sites": maybe(st.lists(site, max_size=3))},
    optional={"agent": maybe(st.fixed_dictionaries({}, optional={
        "listen": maybe(st.sampled_from(["127.0.0.1:0", "x", ":1"])),
        "concurrency": maybe(st.integers(-5, 20_000)),
        "jitter": maybe(st.floats(-1, 1))})),
              "defaults": maybe(st.just({"interval": "1m", "timeout": "10s"})),
              "classifier": maybe(st.just({"levels": {"site_down": 1}})),
              "unknown": anything})


@BOUNDED
@given(config)
def test_config_shaped_structures_give_config_or_config_error(structure: dict[str, Any]) -> None:
    load(yaml.safe_dump(structure, allow_unicode=True))


@BOUNDED
@given(anything)
def test_random_structures_give_config_or_config_error(structure: Any) -> None:
    load(yaml.safe_dump(structure, allow_unicode=True))


HTML_BITS = ["<html>", "<body>", "<main id='maincontent'>", "</main>", "<div>", "</div>",
             "<p>", "<script>", "</script>", "<!--", "-->", "<![CDATA[", "&amp;", "&#0;",
             "&#x110000;", "Demo", "price", "\x00", "\ud7ff", "<<>>", "</", "<a href=x",
             "\ufeff", "é", "€", " ", "\n"]
bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=1000).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(HTML_BITS), max_size=60).map(
        lambda bits: "".join(bits).encode("utf-8", "surrogatepass")),
)
content_types = st.sampled_from([
    "text/html", "text/html; charset=utf-8", "text/html; charset=utf-16",
    "text/html; charset=latin-1", "text/html; charset=utf-7", "text/html; charset=bogus",
    "text/html; charset=", "application/json", "", "text/html; charset=\"utf-8\"; x=y"])
checks = st.fixed_dictionaries({}, optional={
    "body_contains": st.lists(st.sampled_from(["Demo", "price", "é", ""]), max_size=2),
    "body_not_contains": st.lists(st.sampled_from(["error", "\x00", "<"]), max_size=2),
    "body_matches": st.lists(st.sampled_from([r"\d+", r"^<html", "(?s).*"]), max_size=2),
    "body_not_matches": st.lists(st.sampled_from([r"[\x00-\x08]", "Exception"]), max_size=2),
    "selector": st.sampled_from(["main#maincontent", "div > p", "a[href]", "script"]),
    "max_body_bytes": st.sampled_from(["100B", "1KiB", "2MiB"]),
})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_server() -> AsyncIterator[HostileServer]:
    async with hostile_server() as server:
        yield server


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, content_type=content_types, spec=checks)
async def test_any_body_gives_a_probe_result(fuzz_server: HostileServer, body: bytes,
                                             content_type: str, spec: dict[str, Any]) -> None:
    fuzz_server.body, fuzz_server.content_type = body, content_type
    cfg = Config.model_validate({"sites": [{"name": "s", "base_url": fuzz_server.url,
                                            "checks": [{"name": "c", "path": "/body", **spec}]}]})
    clients = HttpClients("storewatch-fuzz")
    try:
        ctx = ProbeContext(clients, cfg.sites[0], 2.0)
        result = await run_guarded(probe_availability, cfg.sites[0].checks[0],  # type: ignore[arg-type]
                                   ctx)
    finally:
        await clients.aclose()
    assert {f.kind.value for f in result.findings} <= {"page_corrupted"}, result.findings
    assert result.success is (not result.findings)
    assert result.measurements["body_bytes"] <= min(len(body), cfg.sites[0].checks[0]
                                                    .max_body_bytes)


# --- a value that validates must run: one check of the demo store, in-process -----------------

HUGE = "__huge_integer__"
"""Replaced by a 5,000-digit integer in the YAML text (yaml cannot even dump one)."""


def _hostile_values(store_port: int) -> st.SearchStrategy[Any]:
    numbers = st.sampled_from([0, -1, 1, 2**63, -(2**63), 10**25, 0.0, -0.0, 1e-9, 1e308,
                               float("inf"), float("-inf"), float("nan"), 65536, 99999, HUGE])
    durations = st.sampled_from(["0s", "0", "0ms", "1ms", "0.0001s", "-1s", "3650d", "3651d",
                                 "1e3s", "1h", "0.5s", "1s", "2s", "9" * 40 + "s"])
    urls = st.sampled_from([f"http://127.0.0.1:{store_port}", f"http://localhost:{store_port}",
                            f"http://127.0.0.1:{store_port}/sub/", f"https://127.0.0.1:{store_port}",
                            "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1:1",
                            "http://127.0.0.1:-1", "http://127.0.0.1:port", "http://[::1",
                            "http://127.0.0.1:65536", f"HTTP://127.0.0.1:{store_port}"])
    texts = st.sampled_from(["", " ", "/", "//x", "/?a=%zz", "/\x00", "é" * 50, "x" * 5000,
                             "(", "[[", "::", "${HOME}", "$$", "GET", "10MB", "0B", "1KiB",
                             "1e999", "-5", "true", "~"])
    structures = st.sampled_from([[], {}, [200], [0], [999], [200, 200], {"X-A": "b"},
                                  {"Host": "evil"}, {"": ""}, ["a", 1], [None], None, True])
    return st.one_of(numbers, durations, urls, texts, structures)


FUZZ_FIELDS: list[tuple[str | int, ...]] = [
    ("agent", "concurrency"), ("agent", "jitter"), ("agent", "user_agent"),
    ("defaults", "interval"), ("defaults", "timeout"),
    ("sites", 0, "base_url"), ("sites", 0, "interval"), ("sites", 0, "timeout"),
    ("sites", 0, "tls", "warn_days"), ("sites", 0, "tls", "verify"), ("sites", 0, "plan"),
    ("sites", 0, "checks", 0, "path"), ("sites", 0, "checks", 0, "timeout"),
    ("sites", 0, "checks", 0, "interval"), ("sites", 0, "checks", 0, "max_body_bytes"),
    ("sites", 0, "checks", 0, "max_redirects"), ("sites", 0, "checks", 0, "expect_status"),
    ("sites", 0, "checks", 0, "latency_threshold"), ("sites", 0, "checks", 0, "headers"),
    ("sites", 0, "checks", 0, "body_contains"), ("sites", 0, "checks", 0, "selector"),
    ("sites", 0, "checks", 0, "method"), ("sites", 0, "checks", 1, "min_count"),
    ("sites", 0, "checks", 1, "max_drop"), ("sites", 0, "checks", 1, "baseline_runs"),
    ("sites", 0, "checks", 1, "max_body_bytes"), ("sites", 0, "checks", 1, "pages"),
    ("sites", 0, "checks", 2, "queries", 0, "min_results"),
    ("sites", 0, "checks", 2, "queries", 0, "path"),
    ("incidents", "confirm"), ("incidents", "flap_window"), ("incidents", "reminder"),
]


def _demo_config(store_url: str, state_dir: str) -> dict[str, Any]:
    return {
        "agent": {"state_dir": state_dir, "jitter": 0},
        "defaults": {"interval": "5s", "timeout": "2s"},
        "incidents": {},
        "sites": [{"name": "shop", "base_url": store_url, "tls": {}, "checks": [
            {"name": "home", "path": "/", "body_contains": ["Demo Outfitters"]},
            {"type": "catalog", "name": "tops", "pages": ["/category/tops"],
             "count": {"css": "li.product-card"}},
            {"type": "search", "name": "search", "queries": [{"path": "/search?q=shirt"}],
             "count": {"css": "li.product-card"}},
        ]}],
    }


def _set(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = doc
    for segment in path[:-1]:
        target = target[segment]
    target[path[-1]] = value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_store() -> AsyncIterator[Any]:
    from agent.demo.storefront import start_store

    shop = await start_store("127.0.0.1", 0)
    try:
        yield shop
    finally:
        await shop.close()


class _Crashes(logging.Handler):
    """Collects every log record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_a_config_that_validates_runs_without_a_traceback(
        fuzz_store: Any, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    from agent.service import check_once

    port = int(fuzz_store.url.rsplit(":", 1)[1])
    doc = _demo_config(fuzz_store.url, str(tmp_path_factory.mktemp("fuzz-state")))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(FUZZ_FIELDS), label="field")
        _set(doc, path, data.draw(_hostile_values(port), label="value"))
    text = yaml.safe_dump(doc, allow_unicode=True).replace(repr(HUGE), "7" * 5000)
    try:
        config = load_config_text(text, Config, filename="fuzz.yaml", env={"HOME": "/root"})
    except ConfigError as exc:
        assert all("\n" not in line and line.startswith("fuzz.yaml") for line in exc.lines())
        return
    crashes = _Crashes()
    logging.getLogger().addHandler(crashes)
    try:
        async with asyncio.timeout(60):
            observations = await check_once(config)
    finally:
        logging.getLogger().removeHandler(crashes)
    assert len(observations) == len(config.planned_checks())
    summaries = [f.summary for o in observations for f in o.result.findings]
    assert not [s for s in summaries if s.startswith("probe error")], summaries
    assert crashes.records == [], [r.getMessage() for r in crashes.records]
