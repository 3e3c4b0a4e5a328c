"""load_config / load_config_text: one-line file:line errors, substitution, secrets."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from agent.config.durations import Duration
from agent.config.loader import load_config, load_config_text
from agent.config.secrets import (
    SecretScrubbingFilter,
    clear_secrets,
    registered_secrets,
    scrub,
)
from agent.errors import ConfigError

STRICT = ConfigDict(extra="forbid", frozen=True)


class HttpCheck(BaseModel):
    model_config = STRICT
    type: Literal["http"]
    url: HttpUrl
    expect_status: int = 200


class TcpCheck(BaseModel):
    model_config = STRICT
    type: Literal["tcp"]
    host: str
    port: int


Check = Annotated[HttpCheck | TcpCheck, Field(discriminator="type")]


class Site(BaseModel):
    model_config = STRICT
    name: str
    url: HttpUrl
    interval: Duration = 60.0
    severity: Literal["low", "high"] = "low"
    checks: list[Check] = Field(default_factory=list)


class Sink(BaseModel):
    model_config = STRICT
    url: HttpUrl
    token: str

    @field_validator("token")
    @classmethod
    def _not_placeholder(cls, value: str) -> str:
        if value == "changeme":
            raise ValueError("token is still the placeholder 'changeme'")
        return value


class Options(BaseModel):
    model_config = STRICT
    timeout: Duration = 10.0
    verify_tls: bool = True


class Config(BaseModel):
    model_config = STRICT
    sites: list[Site]
    sinks: dict[str, Sink] = Field(default_factory=dict)
    options: Options = Field(default_factory=Options)
    note: str = ""


def _load(text: str, env: dict[str, str] | None = None) -> Config:
    return load_config_text(textwrap.dedent(text), Config, filename="cfg.yaml", env=env or {})


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


VALID = """\
sites:
  - name: shop
    url: https://shop.example.com/
    interval: 1m30s
    checks:
      - type: http
        url: https://shop.example.com/cart
      - type: tcp
        host: shop.example.com
        port: 443
sinks:
  jira:
    url: https://jira.example.com/
    token: abc-123-token
options:
  timeout: 250ms
"""


def test_valid_config() -> None:
    config = _load(VALID)
    assert config.sites[0].interval == 90.0
    assert config.options.timeout == 0.25
    assert isinstance(config.sites[0].checks[1], TcpCheck)
    assert config.sinks["jira"].token == "abc-123-token"


ERRORS = [
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
          - name: b
            url: https://b.example/
            intervall: 5m
        """,
        "cfg.yaml:6: sites[1].intervall: unknown key 'intervall'; did you mean 'interval'?",
        id="unknown-key-in-list",
    ),
    pytest.param(
        """\
        sites: []
        optoins:
          timeout: 5s
        """,
        "cfg.yaml:2: optoins: unknown key 'optoins'; did you mean 'options'?",
        id="unknown-key-top-level",
    ),
    pytest.param(
        """\
        sites: []
        colour: blue
        """,
        "cfg.yaml:2: colour: unknown key 'colour'",
        id="unknown-key-no-suggestion",
    ),
    pytest.param(
        """\
        sites: []
        options:
          timeout: 5s
          verify_ssl: false
        """,
        "cfg.yaml:4: options.verify_ssl: unknown key 'verify_ssl'; did you mean 'verify_tls'?",
        id="unknown-key-nested-model",
    ),
    pytest.param(
        """\
        sites: []
        sinks:
          jira:
            url: https://jira.example/
            token: t0ken
            tokn: x
        """,
        "cfg.yaml:6: sinks.jira.tokn: unknown key 'tokn'; did you mean 'token'?",
        id="unknown-key-in-dict-value",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            checks:
              - type: tcp
                host: a.example
                port: 443
                prot: 80
        """,
        "cfg.yaml:8: sites[0].checks[0].prot: unknown key 'prot'; did you mean 'port'?",
        id="unknown-key-in-discriminated-union",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            checks:
              - type: http
                url: https://a.example/x
                expect_statuss: 200
        """,
        "cfg.yaml:7: sites[0].checks[0].expect_statuss: unknown key 'expect_statuss'; "
        "did you mean 'expect_status'?",
        id="unknown-key-in-other-union-member",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            checks:
              - type: tcp
                host: a.example
                port: https
        """,
        "cfg.yaml:7: sites[0].checks[0].port: "
        "Input should be a valid integer, unable to parse string as an integer",
        id="wrong-type-in-union",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            checks:
              - type: ftp
                host: a.example
        """,
        "cfg.yaml:5: sites[0].checks[0].type: 'ftp' is not one of 'http', 'tcp'",
        id="bad-discriminator",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            checks:
              - host: a.example
        """,
        "cfg.yaml:5: sites[0].checks[0]: required key 'type' is missing",
        id="missing-discriminator",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: not a url
        """,
        "cfg.yaml:3: sites[0].url: Input should be a valid URL, relative URL without a base",
        id="bad-url",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            severity: urgent
        """,
        "cfg.yaml:4: sites[0].severity: Input should be 'low' or 'high'",
        id="bad-literal",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            interval: 5x
        """,
        "cfg.yaml:4: sites[0].interval: '5x' is not a duration; use e.g. 30s, 5m, 1h30m",
        id="bad-duration",
    ),
    pytest.param(
        """\
        sites: []
        options:
          timeout: -5s
        """,
        "cfg.yaml:3: options.timeout: duration must not be negative, got '-5s'",
        id="negative-duration",
    ),
    pytest.param(
        """\
        sites: []
        options:
          verify_tls: maybe
        """,
        "cfg.yaml:3: options.verify_tls: Input should be a valid boolean, "
        "unable to interpret input",
        id="wrong-type-bool",
    ),
    pytest.param(
        """\
        sites:
          name: a
        """,
        "cfg.yaml:1: sites: expected a list, not a mapping",
        id="mapping-instead-of-list",
    ),
    pytest.param(
        """\
        sites:
          - just-a-string
        """,
        "cfg.yaml:2: sites[0]: expected a mapping of keys to values, not a string",
        id="string-instead-of-mapping",
    ),
    pytest.param(
        """\
        sites: []
        sinks:
          jira:
            url: https://jira.example/
            token: changeme
        """,
        "cfg.yaml:5: sinks.jira.token: token is still the placeholder 'changeme'",
        id="value-error-prefix-stripped",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
          - url: https://b.example/
            interval: 5m
        """,
        "cfg.yaml:4: sites[1]: required key 'name' is missing",
        id="missing-key-in-list",
    ),
    pytest.param(
        """\
        # no sites yet
        options:
          timeout: 5s
        """,
        "cfg.yaml:2: required key 'sites' is missing",
        id="missing-key-top-level",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            interval: 5x
            severity: urgent
          - name: b
        """,
        "cfg.yaml:4: sites[0].interval: '5x' is not a duration; use e.g. 30s, 5m, 1h30m",
        id="more-errors",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            interval: 5x
            severity: urgent
        """,
        "cfg.yaml:4: sites[0].interval: '5x' is not a duration; use e.g. 30s, 5m, 1h30m",
        id="one-more-error",
    ),
    pytest.param(
        """\
        sites: []
        sinks:
          "shop.example.com":
            url: nope
            token: t0ken
        """,
        "cfg.yaml:4: sinks['shop.example.com'].url: "
        "Input should be a valid URL, relative URL without a base",
        id="dotted-dict-key",
    ),
    pytest.param(
        """\
        defaults: &defaults
          url: https://a.example/
        sites:
          - <<: *defaults
            name: a
            interval: 5x
        """,
        "cfg.yaml:6: sites[0].interval: '5x' is not a duration; use e.g. 30s, 5m, 1h30m",
        id="merge-key",
    ),
    # --- YAML-level errors
    pytest.param(
        """\
        sites:
          - name: a
           url: b
        """,
        "cfg.yaml:3: invalid YAML: while parsing a block collection, did not find expected "
        "'-' indicator",
        id="yaml-bad-indent",
    ),
    pytest.param(
        """\
        sites: [a, b
        note: x
        """,
        "cfg.yaml:2: invalid YAML: while parsing a flow sequence, did not find expected ',' "
        "or ']'",
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        """\
        note: "unterminated
        """,
        "cfg.yaml:2: invalid YAML: while scanning a quoted scalar, "
        "found unexpected end of stream",
        id="yaml-unterminated-string",
    ),
    pytest.param(
        "sites: []\n---\nsites: []\n",
        "cfg.yaml:2: invalid YAML: expected a single document in the stream, "
        "but found another document",
        id="yaml-two-documents",
    ),
    pytest.param(
        "note: !!python/object:os.system x\n",
        "cfg.yaml:1: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system'",
        id="yaml-unsafe-tag",
    ),
    pytest.param(
        """\
        sites:
          - name: a
            url: https://a.example/
            name: b
        """,
        "cfg.yaml:4: sites[0]: duplicate key 'name'",
        id="duplicate-key",
    ),
    pytest.param(
        """\
        sites: []
        note: a
        note: b
        """,
        "cfg.yaml:3: duplicate key 'note'",
        id="duplicate-key-top-level",
    ),
    pytest.param(
        "- a\n- b\n",
        "cfg.yaml:1: config must be a mapping of keys to values, not a list",
        id="document-is-list",
    ),
    pytest.param(
        "just text\n",
        "cfg.yaml:1: config must be a mapping of keys to values, not a string",
        id="document-is-scalar",
    ),
    pytest.param(
        "sites: []\nnote: &a [1, *a]\n",
        "cfg.yaml:2: note[1]: recursive alias: a value contains itself",
        id="recursive-alias",
    ),
    pytest.param("", "cfg.yaml: config is empty", id="empty-file"),
    pytest.param("# only a comment\n\n", "cfg.yaml: config is empty", id="only-comments"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(text)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        _load("sites: []\noptoins: {}\n")
    assert (info.value.file, info.value.line, info.value.field) == ("cfg.yaml", 2, "optoins")
    assert info.value.problem == "unknown key 'optoins'; did you mean 'options'?"


def test_merge_key_may_override_merged_values() -> None:
    config = _load("""\
        sites:
          - &first
            name: one
            url: https://a.example/
          - <<: *first
            name: two
        """)
    assert [s.name for s in config.sites] == ["one", "two"]
    assert str(config.sites[1].url) == "https://a.example/"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, Config)
    assert str(info.value) == f"{path}: cannot read config: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, Config)
    assert str(info.value) == f"{tmp_path}: cannot read config: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"sites: []\nnote: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Config)
    assert str(info.value) == f"{path}:2: cannot read config: not valid UTF-8 text"


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "storewatch.yaml"
    path.write_text(VALID)
    assert load_config(str(path), Config, env={}).sites[0].name == "shop"
    path.write_text("sites: []\noptions:\n  timeout: 5x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Config, env={})
    assert str(info.value) == (
        f"{path}:3: options.timeout: '5x' is not a duration; use e.g. 30s, 5m, 1h30m")


# --------------------------------------------------------------------------- substitution

SUBSTITUTIONS = [
    pytest.param("${SHOP}", {"SHOP": "acme"}, "acme", id="set"),
    pytest.param("x-${SHOP}-${SHOP}-y", {"SHOP": "acme"}, "x-acme-acme-y", id="twice-inline"),
    pytest.param("${SHOP:-fallback}", {}, "fallback", id="default-unset"),
    pytest.param("${SHOP:-fallback}", {"SHOP": ""}, "fallback", id="default-empty"),
    pytest.param("${SHOP:-fallback}", {"SHOP": "acme"}, "acme", id="default-set"),
    pytest.param("${SHOP:-}", {}, "", id="empty-default"),
    pytest.param("${SHOP}", {"SHOP": ""}, "", id="set-empty"),
    pytest.param("$${SHOP}", {"SHOP": "acme"}, "${SHOP}", id="escaped-reference"),
    pytest.param("cost: $$5", {}, "cost: $5", id="escaped-dollar"),
    pytest.param("cost: $5", {}, "cost: $5", id="lone-dollar"),
    pytest.param("ends with $", {}, "ends with $", id="trailing-dollar"),
    pytest.param("${SHOP}", {"SHOP": "a: [b]\n- c"}, "a: [b]\n- c", id="no-yaml-injection"),
    pytest.param("${SHOP}", {"SHOP": "${OTHER}"}, "${OTHER}", id="no-recursive-expansion"),
]


@pytest.mark.parametrize(("value", "env", "expected"), SUBSTITUTIONS)
def test_substitution(value: str, env: dict[str, str], expected: str) -> None:
    config = _load(f"sites: []\nnote: '{value}'\n", env)
    assert config.note == expected


def test_substitution_only_in_strings_and_not_in_keys() -> None:
    config = _load("""\
        sites:
          - name: ${NAME}
            url: ${BASE}/shop
            interval: ${EVERY:-2m}
        sinks:
          ${KEY}:
            url: https://jira.example/
            token: t0ken
        """, {"NAME": "acme", "BASE": "https://acme.example", "KEY": "jira"})
    assert config.sites[0].name == "acme"
    assert str(config.sites[0].url) == "https://acme.example/shop"
    assert config.sites[0].interval == 120.0
    assert list(config.sinks) == ["${KEY}"]


WHERE = "cfg.yaml:3: sites[0].name:"
HINT = "write ${VAR}, ${VAR:-default}, ${cred:NAME}, ${file:/path}, or $$ for a literal $"

SUBSTITUTION_ERRORS = [
    pytest.param("${SHOP_NAME}", {},
                 "cfg.yaml:3: sites[0].name: environment variable SHOP_NAME is not set",
                 id="unset"),
    pytest.param("${1abc}", {}, f"{WHERE} malformed reference '${{1abc}}'; {HINT}",
                 id="malformed-name"),
    pytest.param("${}", {}, f"{WHERE} malformed reference '${{}}'; {HINT}",
                 id="malformed-empty"),
    pytest.param("${A-b}", {}, f"{WHERE} malformed reference '${{A-b}}'; {HINT}",
                 id="malformed-operator"),
    pytest.param("pa${ss", {},
                 f"{WHERE} malformed reference '${{ss' (no closing }}); {HINT}",
                 id="unterminated"),
    pytest.param("${", {},
                 f"{WHERE} malformed reference '${{' (no closing }}); {HINT}",
                 id="bare-open"),
    pytest.param("${cred:shop-token}", {},
                 "cfg.yaml:3: sites[0].name: systemd credential 'shop-token' not found: "
                 "CREDENTIALS_DIRECTORY is not set",
                 id="cred-no-directory"),
    pytest.param("${cred:../etc/passwd}", {"CREDENTIALS_DIRECTORY": "/run/credentials/x"},
                 "cfg.yaml:3: sites[0].name: invalid systemd credential name '../etc/passwd': "
                 "use a plain file name",
                 id="cred-traversal"),
    pytest.param("${file:relative.txt}", {},
                 "cfg.yaml:3: sites[0].name: ${file:...} needs an absolute path, "
                 "not 'relative.txt'",
                 id="file-relative"),
    pytest.param("${file:/nonexistent/storewatch/secret}", {},
                 "cfg.yaml:3: sites[0].name: cannot read file /nonexistent/storewatch/secret: "
                 "No such file or directory",
                 id="file-missing"),
]


@pytest.mark.parametrize(("value", "env", "message"), SUBSTITUTION_ERRORS)
def test_substitution_errors(value: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(f"sites:\n  - url: https://a.example/\n    name: '{value}'\n", env)
    assert str(info.value) == message


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREWATCH_TEST_NOTE", "from-environ")
    config = load_config_text("sites: []\nnote: ${STOREWATCH_TEST_NOTE}\n", Config,
                              filename="cfg.yaml")
    assert config.note == "from-environ"


def test_missing_credential_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load("sites: []\nnote: ${cred:tok}\n", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert str(info.value) == (
        f"cfg.yaml:2: note: systemd credential 'tok' not found: no file {tmp_path}/tok")


# --------------------------------------------------------------------------- secrets


def test_credential_is_read_and_registered(tmp_path: Path) -> None:
    (tmp_path / "jira-token").write_text("jira-s3cret\n")
    config = _load("""\
        sites: []
        sinks:
          jira:
            url: https://jira.example/
            token: ${cred:jira-token}
        """, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.sinks["jira"].token == "jira-s3cret"
    assert "jira-s3cret" in registered_secrets()
    assert scrub("Authorization: Bearer jira-s3cret") == "Authorization: Bearer ***"


def test_file_secret_is_read_and_registered(tmp_path: Path) -> None:
    secret = tmp_path / "token.txt"
    secret.write_text("file-s3cret\n")
    config = _load(f"""\
        sites: []
        sinks:
          jira:
            url: https://jira.example/
            token: "${{file:{secret}}}"
        """)
    assert config.sinks["jira"].token == "file-s3cret"
    assert registered_secrets() == frozenset({"file-s3cret"})


@pytest.mark.parametrize(
    ("name", "is_secret"),
    [
        pytest.param("JIRA_TOKEN", True, id="token"),
        pytest.param("db_password", True, id="password-lowercase"),
        pytest.param("SMTP_PASSWD", True, id="passwd"),
        pytest.param("CLIENT_SECRET", True, id="secret"),
        pytest.param("SHOP_APIKEY", True, id="apikey"),
        pytest.param("SHOP_API_KEY", True, id="api_key"),
        pytest.param("PRIVATE_HEADER", True, id="private"),
        pytest.param("SHOP_NAME", False, id="plain"),
    ],
)
def test_env_secrets_registered_by_name(name: str, is_secret: bool) -> None:
    _load(f"sites: []\nnote: ${{{name}}}\n", {name: "value-1234"})
    assert ("value-1234" in registered_secrets()) is is_secret


def test_secret_is_scrubbed_from_validation_errors() -> None:
    with pytest.raises(ConfigError) as info:
        _load("""\
            sites: []
            options:
              timeout: ${API_TOKEN}
            """, {"API_TOKEN": "tok-abcdef"})
    assert str(info.value) == (
        "cfg.yaml:3: options.timeout: '***' is not a duration; use e.g. 30s, 5m, 1h30m")


def test_loaded_secret_is_scrubbed_from_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "jira-token").write_text("jira-s3cret")
    config = _load("""\
        sites: []
        sinks:
          jira:
            url: https://jira.example/
            token: ${cred:jira-token}
        """, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    caplog.handler.addFilter(SecretScrubbingFilter())
    try:
        logging.getLogger("tests.config.loader").warning(
            "sink rejected token %s", config.sinks["jira"].token)
    finally:
        caplog.handler.removeFilter(caplog.handler.filters[-1])
    assert caplog.text.endswith("sink rejected token ***\n")
    assert "jira-s3cret" not in caplog.text
