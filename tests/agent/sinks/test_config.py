"""Sink config models: strict, defaults filled in, one clear line per mistake, secrets hidden."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.config.loader import load_config_text
from agent.config.secrets import registered_secrets, scrub
from agent.errors import ConfigError
from agent.sinks import SINKS, sink_model
from classifier import Level

JIRA = """\
    type: jira
    url: https://acme.atlassian.net
    email: ops@acme.example
    api_token: ${cred:jira_token}
    project: OPS
"""


def load(text: str, env: dict[str, str] | None = None) -> BaseModel:
    text = textwrap.dedent(text)
    model = sink_model(text.split("\n", 1)[0].split(":", 1)[1].strip())
    return load_config_text(text, model, filename="sinks.yaml", env=env or {})


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "jira_token").write_text("jira-token-from-systemd\n")
    return {"CREDENTIALS_DIRECTORY": str(tmp_path)}


def test_secrets_from_credentials_are_hidden_and_registered(creds: dict[str, str]) -> None:
    config = load(JIRA, creds)
    assert "jira-token-from-systemd" not in repr(config)
    assert "jira-token-from-systemd" in registered_secrets()
    assert scrub("token jira-token-from-systemd") == "token ***"


def test_level_maps_take_l_names_or_numbers_and_keep_defaults(creds: dict[str, str]) -> None:
    config = load(JIRA + "    priorities:\n      L1: Blocker\n      2: Major\n", creds)
    assert config.priorities == {  # type: ignore[attr-defined]
        Level.L1: "Blocker", Level.L2: "Major", Level.L3: "Medium", Level.L4: "Low"}


@pytest.mark.parametrize(("text", "message"), [
    pytest.param(JIRA + "    priorities:\n      L5: High\n",
                 "sinks.yaml:7: priorities.L5: Input should be 1, 2, 3 or 4", id="bad-level"),
    pytest.param(JIRA.replace("project: OPS", "project: ops team"),
                 "sinks.yaml:5: project: String should match pattern", id="jira-project-key"),
    pytest.param(JIRA.replace("https://acme", "https://me:pw@acme"),
                 "sinks.yaml:2: url: credentials in the URL are not allowed", id="url-creds"),
    pytest.param(JIRA + "    labels: [has space]\n", "sinks.yaml:6: labels[0]: String should "
                 "match pattern", id="jira-label-space"),
    pytest.param(JIRA + "    prioritys: {}\n", "sinks.yaml:6: prioritys: unknown key",
                 id="unknown-key"),
    pytest.param("type: pagerduty\nrouting_key: abc\n", "sinks.yaml:2: routing_key: must be "
                 "the 32-character Events API v2 integration key, not 3 characters",
                 id="pagerduty-key"),
    pytest.param("type: webhook\nurl: https://hooks.example/in\nsecret: short\n",
                 "sinks.yaml:3: secret: use at least 16 characters (or whsec_<base64>)",
                 id="webhook-secret"),
    pytest.param("type: webhook\nurl: https://hooks.example/in\nsecret: whsec_%%%\n",
                 "sinks.yaml:3: secret: a secret starting with whsec_ must continue in base64",
                 id="webhook-whsec"),
    pytest.param("type: email\nhost: smtp.example\nsender: a@b.example\nto: [c@d.example]\n"
                 "security: none\nusername: u\npassword: p\n",
                 "refusing to send a password without TLS", id="email-password-no-tls"),
    pytest.param("type: email\nhost: smtp.example\nsender: nobody\nto: [c@d.example]\n",
                 "sinks.yaml:3: sender: String should match pattern", id="email-sender"),
    pytest.param("type: alertmanager\nurls: [http://am:9093]\nlabels: {severity: x}\n",
                 "sinks.yaml:3: labels: label 'severity' is set by storewatch", id="am-label"),
    pytest.param("type: alertmanager\nurls: [http://am:9093]\nusername: u\n",
                 "username and password go together", id="am-auth"),
    pytest.param("type: alertmanager\nurls: []\n", "sinks.yaml:2: urls: ", id="am-no-urls"),
    pytest.param("type: redmine\nurl: https://rm.example\napi_key: k\nproject: p\n",
                 "required key 'dedup_field_id' is missing", id="redmine-dedup-field"),
    pytest.param("type: zendesk\nurl: https://a.zendesk.com\nemail: a@b.c\napi_token: t\n"
                 "priorities: {1: highest}\n",
                 "sinks.yaml:5: priorities[1]: Input should be 'urgent'",
                 id="zendesk-priority"),
    pytest.param("type: github\nrepo: acme\ntoken: t\n", "sinks.yaml:2: repo: String should "
                 "match pattern", id="github-repo"),
])
def test_invalid_sink_config_is_one_line_naming_the_field(
        text: str, message: str, creds: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load(text, creds)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", sorted(SINKS))
def test_models_are_strict_and_frozen(name: str) -> None:
    model = sink_model(name)
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True
