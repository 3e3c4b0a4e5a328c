"""`storewatch incidents|tickets|silence` against a PostgreSQL store, as from another host: the
store named by ``--state URL`` or by ``agent.state`` in ``-c FILE`` (password from the
environment or a credential, never shown)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from agent.sinks.base import SinkBuildContext
from agent.sinks.outbox import Outbox
from agent.sinks.render import SiteInfo
from agent.sinks.sqlite import SqliteSink
from classifier import FindingKind as K
from tests.agent.test_incident_engine import Harness, make_config
from tests.conftest import storewatch
from tests.pgcluster import free_port

SECRET = "Pw-canary-90d1e3"


@pytest.fixture
async def shared(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PostgreSQL store with an open, ticketed L1 incident (#1) and a pending one (#2),
    written by an agent whose state directory the CLI never sees."""
    monkeypatch.setattr(Harness, "location", pg_url)
    agent_dir = tmp_path / "agent-host"
    h = Harness(agent_dir, make_config(agent_dir))
    h.run("home", K.SITE_DOWN)
    h.run("home", K.SITE_DOWN)
    h.run("search", K.SEARCH_BROKEN)
    async with httpx.AsyncClient() as http:
        sink = SqliteSink("sqlite", SinkBuildContext("sqlite", lambda: http, agent_dir, "test"))
        await Outbox(h.store, {"sqlite": sink}, lambda s: SiteInfo()).deliver_due()
        sink.close()
    h.store.close()
    return pg_url


def test_state_url_lists_resolves_and_silences(shared: str) -> None:
    listed = storewatch("incidents", "list", "--json", "--state", shared)
    assert listed.returncode == 0, listed.stderr
    incidents = json.loads(listed.stdout)["incidents"]
    assert [(i["id"], i["kind"], i["state"]) for i in incidents] == [
        (2, "search_broken", "pending"), (1, "site_down", "open")]
    assert incidents[1]["tickets"] == [{"sink": "sqlite", "external_id": "LOCAL-1",
                                        "state": "open"}]
    resolved = storewatch("incidents", "resolve", "1", "--state", shared)
    assert (resolved.returncode, resolved.stdout.strip()) == (0, "incident #1 resolved")
    added = storewatch("silence", "add", "--site", "shop", "--duration", "30m", "--state",
                       shared)
    assert added.returncode == 0, added.stderr
    silences = json.loads(storewatch("silence", "list", "--json", "--state", shared).stdout)
    assert [s["site"] for s in silences["silences"]] == ["shop"]
    tickets = storewatch("tickets", "list", "--state", shared)
    assert tickets.returncode == 0 and "LOCAL-1" in tickets.stdout


def test_config_state_with_a_credential(shared: str, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pgpass").write_text(SECRET)  # trust auth: any password is accepted
    url = shared.replace("postgresql://storewatch@", "postgresql://storewatch:${cred:pgpass}@")
    config = tmp_path / "cli.yaml"
    config.write_text(textwrap.dedent(f"""\
        agent:
          state_dir: {tmp_path / 'elsewhere'}
          state: "{url}"
        sites:
          - name: shop
            base_url: http://127.0.0.1:9/
            checks:
              - name: home
                path: /
        """))
    proc = storewatch("incidents", "list", "--open", "-c", str(config),
                      env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 0, proc.stderr
    assert "site_down" in proc.stdout and SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "elsewhere").exists()  # nothing local is made


def test_an_unreachable_or_bad_state_is_one_line_without_the_password() -> None:
    url = f"postgresql://storewatch:{SECRET}@127.0.0.1:{free_port()}/storewatch"
    proc = storewatch("incidents", "list", "--state", url)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("storewatch: cannot connect to the incident store "
                           "postgresql://storewatch@127.0.0.1:")
    assert SECRET not in proc.stdout + proc.stderr
    bad = storewatch("incidents", "list", "--state", "mysql://u:" + SECRET + "@h/db")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "storewatch: --state: expected a postgresql:// URL or the path of a SQLite file")
