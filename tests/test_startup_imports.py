"""An agent loads only what its config uses (issue 6, footprint): the ticket-sink adapters,
psutil (``host:``), bcrypt (web config users) and the HTML parser are imported on demand."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.demo.storefront import DemoStore

# Runs the real daemon for a few probe runs, then reports which modules it had loaded.
_SERVE = textwrap.dedent("""
    import asyncio, json, sys
    from agent.service import Agent, load
    config = load(sys.argv[1])
    asyncio.run(Agent(sys.argv[1], config).serve(duration=1.5))
    print(json.dumps(sorted(sys.modules)))
""")

ON_DEMAND = ("agent.sinks.webhook", "agent.sinks.email", "agent.sinks.jira", "agent.sinks.redmine",
             "agent.sinks.zendesk", "agent.sinks.github", "agent.sinks.pagerduty",
             "agent.sinks.alertmanager", "smtplib", "httpcore", "psutil", "bcrypt", "selectolax")


def _loaded(config: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _SERVE, str(config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return {m.split(".")[0] if not m.startswith("agent.") else m for m in modules}


def _config(store: DemoStore, tmp_path: Path, checks: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        agent: {{listen: "127.0.0.1:0", state_dir: {tmp_path}/state}}
        defaults: {{interval: 1s, timeout: 800ms}}
        sites:
          - name: demo
            base_url: {store.url}
            checks:
        """) + textwrap.indent(textwrap.dedent(checks), " " * 6) + textwrap.dedent(extra)


async def test_availability_agent_with_the_default_sink_loads_nothing_on_demand(
        store: DemoStore, tmp_path: Path, write_config: Callable[[str], Path]) -> None:
    config = write_config(_config(store, tmp_path, """\
        - {name: home, type: availability, body_contains: [Demo Store]}
        """))
    loaded = _loaded(config)
    assert "agent.sinks.sqlite" in loaded
    assert not loaded & set(ON_DEMAND), sorted(loaded & set(ON_DEMAND))


@pytest.mark.parametrize(("checks", "extra", "expected"), [
    pytest.param("- {name: catalog, type: catalog, pages: [/category/tops],"
                 " count: {css: li.product-card}}\n", "", {"selectolax"},
                 id="html-check-loads-selectolax"),
    pytest.param("- {name: home, type: availability}\n",
                 "host: {site: demo, interval: 1s, reading_timeout: 500ms}\n", {"psutil"},
                 id="host-section-loads-psutil"),
    pytest.param("- {name: home, type: availability}\n",
                 "sinks:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/hook', "
                 "secret: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ='}\n",
                 {"agent.sinks.webhook", "httpcore"}, id="webhook-sink-loads-its-adapter-only"),
])
async def test_what_a_config_uses_is_loaded(store: DemoStore, tmp_path: Path,
                                            write_config: Callable[[str], Path], checks: str,
                                            extra: str, expected: set[str]) -> None:
    loaded = _loaded(write_config(_config(store, tmp_path, checks, extra)))
    assert expected <= loaded
    assert not (loaded & set(ON_DEMAND)) - expected, sorted((loaded & set(ON_DEMAND)) - expected)
