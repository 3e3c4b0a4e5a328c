"""Config pieces every sink model shares: the strict base, level-keyed maps, URLs, secrets.

Kept apart from ``agent.config.schema`` so that the schema can import the sink registry without
an import cycle. Validation never does I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from agent.config.durations import Duration
from agent.config.secrets import register_secret
from agent.sinks.config import SinkModel
from classifier import Level

V = TypeVar("V")

DEFAULT_SEVERITIES: Mapping[Level, str] = {
    Level.L1: "critical", Level.L2: "error", Level.L3: "warning", Level.L4: "info"}
"""PagerDuty's severities; also used by the webhook and Alertmanager sinks."""


class SinkSettings(SinkModel):
    """Base of every tracker sink's config: frozen, unknown keys rejected, one request deadline."""

    timeout: Duration = Field(default=10.0, gt=0, le=300)
    """Deadline of one request to the tracker (seconds or e.g. ``10s``)."""


def _level_key(value: object) -> object:
    if isinstance(value, str) and len(value) == 2 and value[0] in "lL" and value[1].isdigit():
        return int(value[1])
    return value


LevelKey = Annotated[Level, BeforeValidator(_level_key)]
"""A level as a map key: ``1`` … ``4`` or ``L1`` … ``L4``."""


def with_defaults(defaults: Mapping[Level, V]) -> Callable[[dict[Level, V]], dict[Level, V]]:
    """An after-validator that fills levels missing from a level map with ``defaults``."""

    def fill(value: dict[Level, V]) -> dict[Level, V]:
        return {**defaults, **value}

    return fill


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an http(s) URL")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"'{value}' has an invalid port: use 1-65535")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use the secret fields")
    if parts.query or parts.fragment:
        raise ValueError(f"'{value}' must not have a query or fragment")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
"""An http(s) URL without credentials; a trailing slash is dropped."""

Secret = Annotated[SecretStr, Field(min_length=1)]
"""A credential, normally ``${cred:NAME}`` or ``${VAR}``; shown as ``**********``."""


def reveal(secret: SecretStr) -> str:
    """The secret's value, registered for scrubbing before it is used anywhere."""
    value = secret.get_secret_value()
    register_secret(value)
    return value


def basic_auth(username: str, password: str) -> str:
    """``Basic <base64>`` for an Authorization header; the encoded form is a secret too."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    register_secret(encoded)
    return f"Basic {encoded}"
