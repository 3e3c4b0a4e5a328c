"""Property-based fuzzing (hypothesis, bounded): the config loader only ever returns a Config or
raises a one-line ConfigError; the availability probe turns any body into a ProbeResult."""

from __future__ import annotations

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
